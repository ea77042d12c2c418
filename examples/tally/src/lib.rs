//! A workflow step: adds `add` to what the steps before it answered.
//!
//! A step of a workflow gets the results of the stage before it as
//! `previous`: one value after a single step (a chain), a list after
//! several (a group; the callback of a chord). `tally` sums them, so that
//! `tally(1) → tally(10) → tally(100)` answers 111, and a chord of
//! `tally(1)`, `tally(2)`, `tally(3)` with a `tally(0)` callback answers 6.
//! With `then`, it first starts such a workflow itself (`start-workflow`).

use wasmjob_sdk::prelude::*;

/// What the stage before answered: nothing (a first step), one number, or
/// one per step of that stage.
#[derive(Deserialize, Default)]
#[serde(untagged)]
enum Previous {
    #[default]
    Nothing,
    One(i64),
    Many(Vec<i64>),
}

#[derive(Deserialize)]
struct Args {
    #[serde(default)]
    add: i64,
    #[serde(default)]
    previous: Option<Previous>,
    /// Fail with a fatal error instead.
    #[serde(default)]
    fail: bool,
    /// Fail with a retryable error until this attempt.
    #[serde(default)]
    succeed_at: u32,
    /// Start a workflow of `tally` steps first: its stages, each the
    /// `add` of each step (`[[1, 2], [3]]`: a chord of 1 and 2, then 3).
    #[serde(default)]
    then: Vec<Vec<i64>>,
    /// Start a workflow of one stage of this many `tally` steps first (a
    /// flood, which the engine refuses past its bound).
    #[serde(default)]
    flood: usize,
}

/// Sums the results of the stage before and `add`.
struct Tally;

impl Job for Tally {
    type Args = Args;
    type Output = i64;

    fn metadata() -> Metadata {
        Metadata::regular().doc("Add `add` to the results of the steps before").retry(RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
    }

    fn call(ctx: &Context, args: Args) -> Result<i64, Error> {
        if !args.then.is_empty() {
            let stages: Vec<Vec<Step>> =
                args.then.iter().map(|stage| stage.iter().map(|add| step(*add)).collect()).collect::<Result<_, _>>()?;
            let id = ctx.start_workflow(stages).map_err(|e| Error::fatal(format!("{e:?}")))?;
            ctx.info(format!("started workflow {id}"));
        }
        if args.flood > 0 {
            let stage = (0..args.flood).map(|_| step(0)).collect::<Result<Vec<_>, _>>()?;
            let id = ctx.start_workflow(vec![stage]).map_err(|e| Error::fatal(format!("{e:?}")))?;
            ctx.info(format!("started workflow {id}"));
        }
        if args.fail {
            return Err(Error::fatal("told to fail"));
        }
        if ctx.attempt() < args.succeed_at {
            return Err(Error::retryable(format!("attempt {} failed", ctx.attempt())));
        }
        let before = match args.previous.unwrap_or_default() {
            Previous::Nothing => Some(0),
            Previous::One(n) => Some(n),
            Previous::Many(all) => all.into_iter().try_fold(0i64, i64::checked_add),
        };
        before.and_then(|b| b.checked_add(args.add)).ok_or_else(|| Error::fatal("overflow"))
    }
}

/// A step of `tally` adding `add`.
fn step(add: i64) -> Result<Step, Error> {
    Step::new("tally", &serde_json::json!({ "add": add })).map_err(|e| Error::fatal(format!("{e:?}")))
}

export_job!(Tally);
