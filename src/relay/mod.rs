//! The per-call bridge between a Twilio media stream and an OpenAI Realtime session.

pub mod bridge;
pub mod budget;
pub mod call;
pub mod conductor;
pub mod engine;
pub mod goodbye;
pub mod handover;
pub mod latency;
pub mod machine;
pub mod media_link;
pub mod playback;
pub mod responses;
pub mod say;
pub mod session_seed;
pub mod sessions;
pub mod shared_plan;
pub mod transcript;
pub mod transfer;
pub mod twilio_socket;
