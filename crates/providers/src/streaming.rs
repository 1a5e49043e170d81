//! Streamed answers: the same requests as [`Providers::complete_with`](crate::Providers) with
//! streaming turned on, read as they arrive. OpenAI-compatible servers and Anthropic send
//! server-sent events; Ollama sends one JSON object per line. Either way the body is cut into
//! lines before any text is decoded, so a chunk boundary inside a UTF-8 character or inside
//! a JSON object changes nothing.

use crate::protocol::Protocol;
use crate::ProviderError;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde_json::Value;

/// What one event or line of a streamed answer says.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub text: Option<String>,
    pub prompt_tokens: Option<u32>,
    pub completion_tokens: Option<u32>,
    /// The answer is complete.
    pub done: bool,
}

/// The body's deltas, one per event or line, in order.
pub(crate) fn deltas(
    protocol: Protocol,
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
) -> std::pin::Pin<Box<dyn Stream<Item = Result<Delta, ProviderError>> + Send>> {
    match protocol {
        Protocol::Ollama => Box::pin(lines(body).map(|line| line.and_then(|line| ollama_delta(&line)))),
        Protocol::OpenAi | Protocol::Anthropic => Box::pin(body.eventsource().map(move |event| {
            let event = event.map_err(|e| ProviderError::Transport(format!("the event stream broke: {e}")))?;
            match protocol {
                Protocol::OpenAi => openai_delta(&event.data),
                _ => anthropic_delta(&event.data),
            }
        })),
        Protocol::Echo => unreachable!("echo streams without I/O"),
    }
}

/// Splits a byte stream into lines, decoding each only once it is whole.
fn lines(
    body: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Send + Unpin + 'static,
) -> impl Stream<Item = Result<String, ProviderError>> + Send {
    let decode = |line: &[u8]| String::from_utf8_lossy(line).trim().to_owned();
    futures::stream::unfold(Some((body, Vec::<u8>::new())), move |state| async move {
        let (mut body, mut buffer) = state?;
        loop {
            if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let text = decode(&line);
                if !text.is_empty() {
                    return Some((Ok(text), Some((body, buffer))));
                }
                continue;
            }
            match body.next().await {
                Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    let error = ProviderError::Transport(format!("the answer broke off: {}", e.without_url()));
                    return Some((Err(error), None));
                }
                // The last line may lack its newline.
                None => {
                    let text = decode(&buffer);
                    return (!text.is_empty()).then_some((Ok(text), None));
                }
            }
        }
    })
}

fn json(data: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(data)
        .map_err(|e| ProviderError::Malformed(format!("a streamed part is not JSON ({e}): {data}")))
}

fn tokens(value: &Value, pointer: &str) -> Option<u32> {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
}

/// An error object sent in the stream after a 200 (overload, content filter).
fn streamed_error(value: &Value) -> Option<ProviderError> {
    let error = value.get("error").filter(|e| !e.is_null())?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| error.to_string());
    Some(ProviderError::Interrupted(message))
}

/// OpenAI's chat completion chunks; `[DONE]` ends the answer, and with
/// `stream_options.include_usage` the last chunk carries the usage.
pub(crate) fn openai_delta(data: &str) -> Result<Delta, ProviderError> {
    if data.trim() == "[DONE]" {
        return Ok(Delta {
            done: true,
            ..Delta::default()
        });
    }
    let value = json(data)?;
    if let Some(error) = streamed_error(&value) {
        return Err(error);
    }
    Ok(Delta {
        text: value
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
            .or_else(|| value.pointer("/choices/0/delta/refusal").and_then(Value::as_str))
            .map(str::to_owned),
        prompt_tokens: tokens(&value, "/usage/prompt_tokens"),
        completion_tokens: tokens(&value, "/usage/completion_tokens"),
        done: false,
    })
}

/// Anthropic's message events: input tokens in `message_start`, text in `content_block_delta`,
/// output tokens in `message_delta`, the end in `message_stop`.
pub(crate) fn anthropic_delta(data: &str) -> Result<Delta, ProviderError> {
    let value = json(data)?;
    if let Some(error) = streamed_error(&value) {
        return Err(error);
    }
    let mut delta = Delta::default();
    match value.get("type").and_then(Value::as_str) {
        Some("message_start") => {
            delta.prompt_tokens = tokens(&value, "/message/usage/input_tokens");
            delta.completion_tokens = tokens(&value, "/message/usage/output_tokens");
        }
        Some("content_block_delta") => {
            delta.text = value.pointer("/delta/text").and_then(Value::as_str).map(str::to_owned);
        }
        Some("message_delta") => {
            delta.completion_tokens = tokens(&value, "/usage/output_tokens");
            delta.prompt_tokens = tokens(&value, "/usage/input_tokens");
        }
        Some("message_stop") => delta.done = true,
        _ => {}
    }
    Ok(delta)
}

/// Ollama's chat lines: `message.content` each, and on the last (`done: true`) the counts.
pub(crate) fn ollama_delta(line: &str) -> Result<Delta, ProviderError> {
    let value = json(line)?;
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        return Err(ProviderError::Interrupted(error.to_owned()));
    }
    let done = value.get("done").and_then(Value::as_bool).unwrap_or(false);
    Ok(Delta {
        text: value
            .pointer("/message/content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        prompt_tokens: tokens(&value, "/prompt_eval_count").filter(|_| done),
        completion_tokens: tokens(&value, "/eval_count").filter(|_| done),
        done,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cut(body: &[u8], every: usize) -> impl Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static {
        let pieces: Vec<reqwest::Result<Bytes>> = body.chunks(every).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(pieces)
    }

    async fn text_of(protocol: Protocol, body: &str, every: usize) -> (String, Option<u32>, Option<u32>, bool) {
        let mut deltas = deltas(protocol, cut(body.as_bytes(), every));
        let (mut text, mut prompt, mut completion, mut done) = (String::new(), None, None, false);
        while let Some(delta) = deltas.next().await {
            let delta = delta.unwrap();
            text.push_str(delta.text.as_deref().unwrap_or(""));
            prompt = delta.prompt_tokens.or(prompt);
            completion = delta.completion_tokens.or(completion);
            done |= delta.done;
        }
        (text, prompt, completion, done)
    }

    #[tokio::test]
    async fn every_cut_of_each_wire_gives_the_same_text() {
        let openai = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"Grüße, \"}}]}\n\n\
            data: {\"choices\":[{\"delta\":{\"content\":\"日本 🌍\"}}]}\n\n\
            data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3}}\n\n\
            data: [DONE]\n\n";
        let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüße, \"}}\n\n\
            event: ping\ndata: {\"type\":\"ping\"}\n\n\
            event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"日本 🌍\"}}\n\n\
            event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":3}}\n\n\
            event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let ollama = "{\"message\":{\"role\":\"assistant\",\"content\":\"Grüße, \"},\"done\":false}\n\
            {\"message\":{\"role\":\"assistant\",\"content\":\"日本 🌍\"},\"done\":false}\n\
            {\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"prompt_eval_count\":5,\"eval_count\":3}";
        for (protocol, body) in [
            (Protocol::OpenAi, openai),
            (Protocol::Anthropic, anthropic),
            (Protocol::Ollama, ollama),
        ] {
            for every in [1, 2, 3, 7, 64, body.len()] {
                assert_eq!(
                    text_of(protocol, body, every).await,
                    ("Grüße, 日本 🌍".to_owned(), Some(5), Some(3), true),
                    "{protocol:?} cut every {every} bytes"
                );
            }
        }
    }

    #[test]
    fn errors_sent_in_the_stream_fail_the_answer() {
        assert!(matches!(
            openai_delta(r#"{"error":{"message":"overloaded"}}"#),
            Err(ProviderError::Interrupted(m)) if m == "overloaded"
        ));
        assert!(matches!(
            anthropic_delta(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#),
            Err(ProviderError::Interrupted(m)) if m == "Overloaded"
        ));
        assert!(matches!(
            ollama_delta(r#"{"error":"model not found"}"#),
            Err(ProviderError::Interrupted(_))
        ));
        assert!(matches!(openai_delta("{not json"), Err(ProviderError::Malformed(_))));
    }
}
