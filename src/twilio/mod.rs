//! Twilio: answering machine detection, call recording, webhook signatures, TwiML, Media Streams message types and the REST client.

pub mod amd;
pub mod dial;
pub mod dtmf;
pub mod media;
pub mod numbers;
pub mod recording;
pub mod rest;
pub mod signature;
pub mod twiml;
