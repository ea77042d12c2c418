//! The [`Job`] trait: what a job author implements.

use serde::{Serialize, de::DeserializeOwned};

use crate::{Context, Due, Error, Metadata, Timestamp, schedule};

/// A job: a factory of tasks (pulsar's `Job`). Export it with
/// [`crate::export_job!`].
pub trait Job {
    /// The task's args, deserialized from the JSON object the task was queued
    /// with (pulsar's keyword args). Args that do not deserialize fail the
    /// task without retry. Use `#[serde(default)]` for optional args.
    type Args: DeserializeOwned;

    /// The task's result, serialized to JSON.
    type Output: Serialize;

    /// What the job declares about itself. Defaults to a regular job named
    /// after the lower-cased type name.
    fn metadata() -> Metadata {
        Metadata::regular()
    }

    /// Runs one task (pulsar's job callable). `ctx` gives the task's id and a
    /// way to queue more tasks.
    fn call(ctx: &Context, args: Self::Args) -> Result<Self::Output, Error>;

    /// For jobs declared with [`crate::Overlap::ByArgs`]: the key under which
    /// tasks must not overlap, or `None` to let this task overlap others
    /// (pulsar's `can_overlap` as a callable of the args).
    fn overlap_key(args: &Self::Args) -> Option<String> {
        let _ = args;
        None
    }

    /// For periodic jobs: whether a task is due at `now` given the previous
    /// run at `last_run_at`. The default follows the job's schedule with
    /// pulsar's semantics ([`schedule::is_due`]); override it to decide at
    /// run time.
    fn is_due(last_run_at: Timestamp, now: Timestamp) -> Due {
        match Self::metadata().schedule() {
            Some((run_every, anchor)) => schedule::is_due(run_every, anchor, last_run_at, now),
            None => Due::never(),
        }
    }
}
