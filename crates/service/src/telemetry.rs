//! Logs and traces. Every process logs JSON to stdout; when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! it also exports its spans over OTLP (HTTP/protobuf), so one trace follows a command from the
//! HTTP request through the event store, the relay and the projector.
//!
//! The rest of the workspace only sees W3C `traceparent` and `tracestate` strings: these helpers
//! are the one place that speaks OpenTelemetry.

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::collections::HashMap;
use std::sync::OnceLock;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt as tracing_fmt, EnvFilter};

/// The variable that turns span export on; the exporter reads it (and the other standard
/// `OTEL_EXPORTER_OTLP_*` variables) itself and appends `/v1/traces`.
pub const OTLP_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The exporting provider, kept so [`shutdown_telemetry`] can flush what is still batched.
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// JSON logs on stdout, filtered by `RUST_LOG` (default `info`), and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans exported in batches to that collector under
/// `service.name = service`. Without the variable no exporter (and no exporter thread) exists.
pub fn init_telemetry(service: &'static str) {
    // Installed whatever the exporter: it costs nothing and libraries that propagate through
    // the global propagator then speak W3C Trace Context like our own helpers.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let endpoint = std::env::var(OTLP_ENDPOINT_VAR).ok().filter(|v| !v.trim().is_empty());
    let (provider, export_error) = match endpoint.as_deref().map(|_| tracer_provider(service)) {
        None => (None, None),
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(error)) => (None, Some(error)),
    };
    let otel_layer = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer(service)));

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = tracing_fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false);
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(json)
        .with(otel_layer)
        .try_init()
        .is_ok();

    if let Some(provider) = provider {
        if installed {
            opentelemetry::global::set_tracer_provider(provider.clone());
            let _ = PROVIDER.set(provider);
        } else {
            // Someone else's subscriber is in place; ours, with its exporter, goes unused.
            let _ = provider.shutdown();
        }
    }
    match (endpoint, export_error) {
        (_, Some(error)) => tracing::error!(service, error = %error,
            "Telemetry initialised without span export: the OTLP exporter could not be built."),
        (Some(endpoint), None) => tracing::info!(service, otlp_endpoint = %endpoint,
            "Telemetry initialised; exporting spans over OTLP."),
        (None, None) => tracing::info!(service, "Telemetry initialised."),
    }
}

fn tracer_provider(service: &'static str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .build()?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build())
}

/// Exports the spans still batched and stops the exporter. Call once, as the process ends;
/// blocks until the collector answered or the export timed out. A no-op without an exporter.
pub fn shutdown_telemetry() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(error) = provider.shutdown() {
            tracing::warn!(error = %error, "Flushing the last spans to the collector failed.");
        }
    }
}

/// Makes `span` a child of the remote span described by W3C `traceparent` (and `tracestate`).
/// Call it before the span is first entered. Does nothing when the header is absent or
/// malformed, or when spans are not exported (no OpenTelemetry layer is installed).
pub fn set_parent_from_traceparent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(parent) = remote_context(traceparent, tracestate) {
        // The only failures are "no OpenTelemetry layer" and "span already started"; either
        // way the span simply starts its own trace.
        let _ = span.set_parent(parent);
    }
}

/// Links `span` to the remote span described by `traceparent`, for a span that serves many
/// traces at once (a published batch) and so cannot be the child of one.
pub fn add_link_from_traceparent(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    if let Some(remote) = remote_context(traceparent, tracestate) {
        span.add_link(remote.span().span_context().clone());
    }
}

/// The W3C `traceparent` and `tracestate` of the current span, to record or send on; `None`
/// when the current span has no valid OpenTelemetry context (no layer installed, or no span).
pub fn current_traceparent() -> Option<(String, Option<String>)> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    let traceparent = carrier.remove(TRACEPARENT)?;
    let tracestate = carrier.remove(TRACESTATE).filter(|s| !s.is_empty());
    Some((traceparent, tracestate))
}

/// The 32 hex digits of trace id in a W3C `traceparent`, when it is well formed.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    remote_context(Some(traceparent), None).map(|context| context.span().span_context().trace_id().to_string())
}

fn remote_context(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert(TRACEPARENT.to_owned(), traceparent?.to_owned());
    if let Some(tracestate) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), tracestate.to_owned());
    }
    // Extract onto an empty context: whatever span is current here is no ancestor of the
    // remote one.
    let context = TraceContextPropagator::new().extract_with_context(&Context::new(), &carrier);
    context.span().span_context().is_valid().then_some(context)
}

/// In-process span capture for tests, so they can assert what would have been exported.
#[cfg(feature = "testing")]
pub mod testing {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing::subscriber::DefaultGuard;
    use tracing_subscriber::layer::SubscriberExt;

    /// A span as exported: its name and W3C ids in hex.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ExportedSpan {
        pub name: String,
        pub trace_id: String,
        pub span_id: String,
        /// All zeros for a root span.
        pub parent_span_id: String,
        pub parent_is_remote: bool,
    }

    /// Spans finished on this thread while the guard of [`capture_spans`] lives.
    pub struct CapturedSpans {
        exporter: InMemorySpanExporter,
        // Kept alive so the layer's tracer keeps exporting.
        _provider: SdkTracerProvider,
    }

    impl CapturedSpans {
        /// Every span finished so far, in the order they ended.
        pub fn finished(&self) -> Vec<ExportedSpan> {
            self.exporter
                .get_finished_spans()
                .expect("the in-memory exporter is readable")
                .into_iter()
                .map(|span| ExportedSpan {
                    name: span.name.into_owned(),
                    trace_id: span.span_context.trace_id().to_string(),
                    span_id: span.span_context.span_id().to_string(),
                    parent_span_id: span.parent_span_id.to_string(),
                    parent_is_remote: span.parent_span_is_remote,
                })
                .collect()
        }
    }

    /// Installs, for the current thread only (so parallel tests are unaffected), a subscriber
    /// with the OpenTelemetry layer exporting synchronously into memory. Run the code under test
    /// on this thread (a current-thread runtime, as `#[sqlx::test]` and `#[tokio::test]` use).
    pub fn capture_spans() -> (DefaultGuard, CapturedSpans) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        (
            guard,
            CapturedSpans {
                exporter,
                _provider: provider,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const INCOMING: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_trace_id_is_read_from_a_well_formed_traceparent_only() {
        assert_eq!(trace_id_of(INCOMING).as_deref(), Some(TRACE_ID));
        assert_eq!(trace_id_of("00-not-a-trace-01"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
    }

    #[test]
    fn without_an_opentelemetry_layer_there_is_no_current_traceparent() {
        let span = tracing::info_span!("request");
        set_parent_from_traceparent(&span, Some(INCOMING), None);
        let _entered = span.enter();
        assert_eq!(current_traceparent(), None);
    }

    #[cfg(feature = "testing")]
    #[test]
    fn a_span_parented_on_a_traceparent_continues_its_trace_and_reports_it() {
        let (_guard, spans) = testing::capture_spans();
        let span = tracing::info_span!("request");
        set_parent_from_traceparent(&span, Some(INCOMING), Some("vendor=value"));
        let (traceparent, tracestate) = span.in_scope(current_traceparent).expect("a valid context");
        drop(span);

        assert_eq!(trace_id_of(&traceparent).as_deref(), Some(TRACE_ID));
        assert!(
            !traceparent.contains("00f067aa0ba902b7"),
            "the span id is the new span's own"
        );
        assert_eq!(tracestate.as_deref(), Some("vendor=value"));
        let exported = spans.finished();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].trace_id, TRACE_ID);
        assert_eq!(exported[0].parent_span_id, "00f067aa0ba902b7");
        assert!(exported[0].parent_is_remote);
    }
}
