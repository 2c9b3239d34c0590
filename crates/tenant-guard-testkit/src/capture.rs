//! Captures `tracing` spans and events in memory, so tests can assert what a request or a
//! transaction logged.
//!
//! ```
//! use tenant_guard_testkit::capture::Capture;
//!
//! let capture = Capture::new();
//! {
//!     let _guard = capture.set_default(); // this thread only
//!     let span = tracing::info_span!("request", status = tracing::field::Empty);
//!     span.record("status", 200u16);
//!     span.in_scope(|| tracing::info!(target: "app", job_id = "j-1", "done"));
//! }
//! let span = capture.span("request").unwrap();
//! assert_eq!(span.field("status"), Some("200"));
//! assert!(span.closed);
//! let event = capture.events().into_iter().find(|e| e.target == "app").unwrap();
//! assert_eq!(event.field("job_id"), Some("j-1"));
//! assert_eq!(event.field("message"), Some("done"));
//! assert_eq!(event.spans, ["request"]);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span seen by a [`Capture`].
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedSpan {
    /// The span's name (`request`, `tenant_tx`, …).
    pub name: &'static str,
    /// Its target.
    pub target: String,
    /// Its fields as recorded so far (strings as they are, other values as `Debug`); a field
    /// declared `Empty` and never recorded is absent.
    pub fields: BTreeMap<String, String>,
    /// The name of its parent span, if any.
    pub parent: Option<&'static str>,
    /// Whether it was closed.
    pub closed: bool,
}

impl CapturedSpan {
    /// The value of `name`, if recorded.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event seen by a [`Capture`].
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedEvent {
    /// Its target (`tenant_guard::audit`, …).
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Its fields, the text under `message`.
    pub fields: BTreeMap<String, String>,
    /// The names of the spans it happened in, outermost first.
    pub spans: Vec<&'static str>,
}

impl CapturedEvent {
    /// The value of `name`, if present.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    /// In order of creation; ids are only unique while a span is open, so closed spans stay here
    /// under a fresh key.
    spans: Vec<CapturedSpan>,
    /// Open span id → index in `spans`.
    open: BTreeMap<u64, usize>,
    events: Vec<CapturedEvent>,
}

/// An in-memory `tracing` layer: every span (with its fields as recorded) and every event.
/// Cheap to clone; clones share what they captured.
#[derive(Clone, Default)]
pub struct Capture {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes a subscriber with this layer (and nothing else) the default of the current thread
    /// until the guard is dropped. Everything is captured, at every level.
    pub fn set_default(&self) -> DefaultGuard {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(self.clone()))
    }

    /// Every span so far, in order of creation.
    pub fn spans(&self) -> Vec<CapturedSpan> {
        self.lock().spans.clone()
    }

    /// The spans named `name`, in order of creation.
    pub fn spans_named(&self, name: &str) -> Vec<CapturedSpan> {
        self.lock()
            .spans
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// The one span named `name`; `None` when there is none, or more than one.
    pub fn span(&self, name: &str) -> Option<CapturedSpan> {
        let mut spans = self.spans_named(name);
        if spans.len() == 1 { spans.pop() } else { None }
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<CapturedEvent> {
        self.lock().events.clone()
    }

    /// Everything captured as text (every span's and event's fields), to check that a secret
    /// appears nowhere.
    pub fn all_text(&self) -> String {
        format!("{:?}", (self.spans(), self.events()))
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let parent = if let Some(parent) = attrs.parent() {
            ctx.span(parent).map(|s| s.name())
        } else if attrs.is_root() {
            None
        } else {
            ctx.lookup_current().map(|s| s.name())
        };
        let mut state = self.lock();
        state.spans.push(CapturedSpan {
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_owned(),
            fields,
            parent,
            closed: false,
        });
        let index = state.spans.len() - 1;
        state.open.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut state = self.lock();
        if let Some(&index) = state.open.get(&id.into_u64()) {
            values.record(&mut Fields(&mut state.spans[index].fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let spans = ctx
            .event_scope(event)
            .map(|scope| scope.from_root().map(|s| s.name()).collect())
            .unwrap_or_default();
        self.lock().events.push(CapturedEvent {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
            spans,
        });
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        let mut state = self.lock();
        if let Some(index) = state.open.remove(&id.into_u64()) {
            state.spans[index].closed = true;
        }
    }
}
