//! Integration tests: the app on 127.0.0.1:0, a fake OpenAI Realtime server and a Twilio media client
//! (`callbridge::simulate`). Run with `TEST_LOG=1` to see the server's logs.
#![allow(dead_code)]

pub mod fake_live;
pub mod fake_realtime;
mod fake_twilio;
mod fleet_harness;
mod helpers;

mod answering_machine;
mod api;
mod barge_in;
mod demo;
mod dtmf;
mod ending;
mod fleet;
mod fleet_control;
mod floods;
mod frames;
mod goodbye;
mod hostile;
mod inbound_call;
mod limits;
mod live;
mod load_balancer;
mod logs;
mod metering;
mod module_graph;
mod outbound;
mod outcomes;
mod pg_store;
mod policy;
mod public_url;
mod recording;
mod records;
mod relay_say;
mod reliability;
mod rest_hangup;
mod restart;
mod rollover;
mod schedule;
mod security;
mod shutdown;
mod simulate_cli;
mod slow_bodies;
mod store;
mod stream_url;
mod transfer;
mod twilio_cli;
mod webhook_outbox;
mod webhooks;
