//! Provider adapters against local servers that speak each wire protocol. Nothing here leaves
//! 127.0.0.1.

mod anthropic;
mod common;
mod echo;
mod metrics;
mod ollama;
mod openai;
mod scenarios;
mod secrets;
mod streaming;
