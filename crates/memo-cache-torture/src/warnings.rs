//! Counting the library's `tracing::warn!` events in a process.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The warnings logged in this process so far.
#[derive(Clone, Default, Debug)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    /// Installs a global subscriber that records every warning (and ignores everything else).
    pub fn install() -> Warnings {
        let warnings = Warnings::default();
        tracing_subscriber::registry()
            .with(Recorder(warnings.clone()))
            .init();
        warnings
    }

    /// How many warnings were logged.
    pub fn count(&self) -> usize {
        self.0.lock().expect("warnings lock").len()
    }

    /// Their messages, in order.
    pub fn messages(&self) -> Vec<String> {
        self.0.lock().expect("warnings lock").clone()
    }
}

struct Recorder(Warnings);

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() != Level::WARN {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        (self.0).0.lock().expect("warnings lock").push(message.0);
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
