//! A `tracing_subscriber::Layer` that records `tracing` events and span edges into the ring
//! file's trace lanes, so a service that already uses `tracing` records by adding one layer.
//!
//! Events go through [`Tracer::event_fmt`]: their fields are formatted by a `Display` wrapper
//! straight into the thread's reusable buffer, with no allocation. A span's text (its name and
//! fields) is formatted once when the span is created or its fields change, and kept in the
//! span's extensions, so entering it records a ready string.

use std::fmt::{self, Write as _};
use std::ops::Range;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::{Level, Tracer};

/// Records `tracing` events, and the entries and exits of spans with their fields, into the
/// trace lane of the thread that emits them.
///
/// An event's text is its `message`, then ` key=value` for each other field, as `tracing`'s
/// compact format writes them (string values quoted); with [`with_target`](Self::with_target)
/// it starts with `target: `. Entering a span records a span entry whose text is the span's
/// name and fields: those given at creation, then those set by `Span::record` (a field set
/// again moves to the end, with its new value). Leaving it records a span exit named after it.
/// Levels map one to one.
///
/// Like [`Tracer`], the layer never blocks on the ring and never waits for a lane: what cannot be
/// recorded is dropped and counted in the file's header.
///
/// ```
/// # use flightrec_recorder::doc_example::recorded_counter;
/// use tracing_subscriber::prelude::*;
///
/// # let (recorded, _dir) = recorded_counter();
/// tracing_subscriber::registry()
///     .with(flightrec_recorder::FlightrecLayer::new(recorded.tracer()))
///     .init();
///
/// let span = tracing::info_span!("request", id = 7).entered();
/// tracing::info!(bytes = 512, "request read");
/// drop(span);
/// ```
pub struct FlightrecLayer {
    tracer: Tracer,
    target: bool,
}

impl FlightrecLayer {
    /// A layer that records into `tracer`'s ring file. Events' targets are left out.
    pub fn new(tracer: Tracer) -> FlightrecLayer {
        FlightrecLayer {
            tracer,
            target: false,
        }
    }

    /// Whether each event's text starts with its target (`my_service::db: ...`); off by default,
    /// since the target costs ring space on every event.
    ///
    /// ```
    /// # use flightrec_recorder::doc_example::recorded_counter;
    /// # let (recorded, _dir) = recorded_counter();
    /// let layer = flightrec_recorder::FlightrecLayer::new(recorded.tracer()).with_target(true);
    /// ```
    pub fn with_target(mut self, target: bool) -> FlightrecLayer {
        self.target = target;
        self
    }
}

impl<S> Layer<S> for FlightrecLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // Formatted before the lock is taken: a field's `Debug` may itself use `tracing`.
        let text = SpanText::new(span.name(), attrs);
        span.extensions_mut().replace(text);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        // A copy, so that no lock is held while the fields' `Debug` impls run.
        let Some(text) = span.extensions().get::<SpanText>().cloned() else {
            return;
        };
        let updated = text.updated(values);
        span.extensions_mut().replace(updated);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let level = level_of(metadata.level());
        let text = EventText(event);
        match self.target {
            true => crate::event!(self.tracer, level, "{}: {text}", metadata.target()),
            false => crate::event!(self.tracer, level, "{text}"),
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let level = level_of(span.metadata().level());
        let extensions = span.extensions();
        match extensions.get::<SpanText>() {
            Some(text) => self.tracer.span_enter(level, &text.text),
            None => self.tracer.span_enter(level, span.name()),
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(metadata) = ctx.metadata(id) else {
            return;
        };
        self.tracer
            .span_exit(level_of(metadata.level()), metadata.name());
    }
}

/// flightrec's level for a `tracing` level.
fn level_of(level: &tracing::Level) -> Level {
    match *level {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        tracing::Level::DEBUG => Level::Debug,
        tracing::Level::TRACE => Level::Trace,
    }
}

/// A field's name as written: raw identifiers (`r#type`) lose their prefix.
fn field_name(field: &Field) -> &'static str {
    let name = field.name();
    name.strip_prefix("r#").unwrap_or(name)
}

/// An event's text, formatted as it is written into the thread's buffer: the message first,
/// then the other fields in the order they were given.
struct EventText<'a>(&'a Event<'a>);

impl fmt::Display for EventText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut message = EventFields::new(f, Pass::Message);
        self.0.record(&mut message);
        let (result, wrote) = (message.result, message.wrote);
        result?;
        let mut rest = EventFields::new(f, Pass::Others);
        rest.wrote = wrote;
        self.0.record(&mut rest);
        rest.result
    }
}

/// Which of an event's fields a visit writes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Message,
    Others,
}

/// Writes an event's fields into a formatter, space separated; a visitor cannot return an
/// error, so the first one is kept and the rest of the visit skipped.
struct EventFields<'f, 'a> {
    out: &'f mut fmt::Formatter<'a>,
    pass: Pass,
    wrote: bool,
    result: fmt::Result,
}

impl<'f, 'a> EventFields<'f, 'a> {
    fn new(out: &'f mut fmt::Formatter<'a>, pass: Pass) -> Self {
        EventFields {
            out,
            pass,
            wrote: false,
            result: Ok(()),
        }
    }

    /// Writes one field if this pass takes it: the message bare, any other as `key=value`.
    fn write(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let is_message = field.name() == "message";
        if self.result.is_err() || is_message != (self.pass == Pass::Message) {
            return;
        }
        let separator = if self.wrote { " " } else { "" };
        self.wrote = true;
        self.result = match is_message {
            true => write!(self.out, "{separator}{value:?}"),
            false => write!(self.out, "{separator}{}={value:?}", field_name(field)),
        };
    }
}

impl Visit for EventFields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() == "message" {
            // A message given as a string (`message = "..."`) is written unquoted.
            true => self.write(field, &format_args!("{value}")),
            false => self.write(field, &value),
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.write(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, value);
    }
}

/// What entering a span records, kept in the span's extensions: its name, then ` key=value` for
/// each field recorded so far.
#[derive(Clone)]
struct SpanText {
    text: String,
    /// Where each field's ` key=value` lies in `text`, so that recording it again replaces it.
    fields: Vec<(Field, Range<usize>)>,
}

impl SpanText {
    fn new(name: &str, attrs: &Attributes<'_>) -> SpanText {
        let mut text = SpanText {
            text: String::from(name),
            fields: Vec::new(),
        };
        attrs.record(&mut text);
        text
    }

    /// This text with the fields of `values` recorded at the end: a field recorded before is
    /// taken out of its place, so that it appears once, with its new value.
    fn updated(&self, values: &Record<'_>) -> SpanText {
        let name_len = self.fields.first().map_or(self.text.len(), |f| f.1.start);
        let mut updated = SpanText {
            text: String::with_capacity(self.text.len() + 16),
            fields: Vec::with_capacity(self.fields.len() + 1),
        };
        updated
            .text
            .push_str(self.text.get(..name_len).unwrap_or_default());
        for (field, range) in &self.fields {
            if values.contains(field) {
                continue;
            }
            let start = updated.text.len();
            updated
                .text
                .push_str(self.text.get(range.clone()).unwrap_or_default());
            updated
                .fields
                .push((field.clone(), start..updated.text.len()));
        }
        values.record(&mut updated);
        updated
    }

    fn push(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let start = self.text.len();
        // Writing into a `String` fails only if `value`'s `Debug` does; keep what it wrote.
        let _ = write!(self.text, " {}={value:?}", field_name(field));
        self.fields.push((field.clone(), start..self.text.len()));
    }
}

impl Visit for SpanText {
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, value);
    }
}
