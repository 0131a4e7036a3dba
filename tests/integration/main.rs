//! Integration tests: the app on 127.0.0.1:0, a fake OpenAI Realtime server and a Twilio media client.
#![allow(dead_code)]

pub mod fake_realtime;
