//! Workflows: tasks that run in stages, each stage's steps in parallel,
//! each stage after the one before it succeeded, with its results.
//!
//! Celery's three shapes are stages:
//!
//! - a **chain** `a → b → c` is three stages of one step: `b` gets `a`'s
//!   result, `c` gets `b`'s;
//! - a **group** of `a, b, c` is one stage of three steps: the workflow's
//!   result is the list of their results, in order;
//! - a **chord** of `a, b, c` then `d` is a stage of three and a stage of
//!   one: `d` gets the list of the three results.
//!
//! A step of a later stage gets the results of the stage before it in its
//! args under [`PREVIOUS`]: one value after a stage of one step, a list in
//! step order after a stage of several. It is written with its workflow,
//! `queued` with reason [`crate::store::WORKFLOW_REASON`] and never due,
//! and is released (due at once) in the same write as the success that
//! completes the stage before it. Retries apply per step. A step that ends
//! otherwise (failed, revoked, expired) fails the workflow: the steps of
//! the stages after it are revoked with reason
//! [`crate::store::UPSTREAM_REASON`] by the next heartbeat's sweep
//! ([`crate::store::Store::abort_workflows`]), whichever way the step
//! ended, with their events; the steps of its own stage run on. A
//! workflow's state is its steps' ([`Workflow::state`]), at once.

use serde_json::Value;

use crate::store::{Millis, StoreError, TaskRecord, TaskState};

/// The key of a later step's args that holds the results of the stage
/// before it.
pub const PREVIOUS: &str = "previous";

/// Most steps in one workflow, all stages together. Default 1,000 (as a
/// batch of tasks); the tenant's `max_queued` counts them all at once.
pub const MAX_STEPS: usize = 1000;

/// Refuses stages (of any step type) with no stage, an empty stage or more
/// than [`MAX_STEPS`] steps: checked before any step is looked at, and
/// before a guest's steps are copied again (`start-workflow`).
pub fn check_shape<T>(stages: &[Vec<T>]) -> Result<(), crate::task::QueueError> {
    use crate::task::QueueError;
    if stages.is_empty() || stages.iter().any(Vec::is_empty) {
        return Err(QueueError::invalid_option("stages", "a workflow has stages, and every stage a step"));
    }
    let steps = stages.iter().fold(0usize, |n, stage| n.saturating_add(stage.len()));
    if steps > MAX_STEPS {
        let message = format!("a workflow holds at most {MAX_STEPS} steps, not {steps}");
        return Err(QueueError::invalid_option("stages", message));
    }
    Ok(())
}

/// A step to start: its job, its args (a JSON object) and its options,
/// from the API or from a job (`start-workflow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub job: String,
    pub args: String,
    pub options: crate::task::QueueOptions,
}

/// A workflow as stored: its steps' tasks, stage by stage, each stage in
/// step order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRecord {
    pub id: String,
    pub tenant: String,
    pub created_at: Millis,
    pub stages: Vec<Vec<TaskRecord>>,
}

/// Where a workflow is, from its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum WorkflowState {
    /// Some steps have not ended, and none failed.
    Running,
    /// Every step succeeded.
    Success,
    /// A step failed, was revoked or expired: the stages after it never run.
    Failure,
}

/// What a workflow's steps say of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub state: WorkflowState,
    /// The first step (by stage, then order) that failed the workflow.
    pub failed_step: Option<String>,
    /// Why: that step's job, state, reason and error.
    pub reason: Option<String>,
    /// Once it succeeded: its last stage's results ([`previous`]).
    pub result: Option<Value>,
}

impl Workflow {
    /// Reads a workflow's state off its steps.
    pub fn state(record: &WorkflowRecord) -> Self {
        let steps = || record.stages.iter().flatten();
        // The step that failed it; not those revoked because of it.
        let failed = steps().find(|t| {
            matches!(t.state, TaskState::Failure | TaskState::Revoked)
                && t.reason.as_deref() != Some(crate::store::UPSTREAM_REASON)
        });
        if let Some(step) = failed {
            let mut reason = format!("step {} ({}) ended {}", step.id, step.job, step.state.as_str());
            if let Some(why) = &step.reason {
                reason.push_str(&format!(": {why}"));
            }
            if let Some(error) = &step.error {
                reason.push_str(&format!(": {error}"));
            }
            return Self {
                state: WorkflowState::Failure,
                failed_step: Some(step.id.clone()),
                reason: Some(reason),
                result: None,
            };
        }
        // Revoked because of a step no longer shown (pruned, or retried
        // by hand before its retry was refused): failed all the same.
        if let Some(step) = steps().find(|t| t.reason.as_deref() == Some(crate::store::UPSTREAM_REASON)) {
            let reason = format!("step {} ({}) was revoked: a step before it did not succeed", step.id, step.job);
            return Self { state: WorkflowState::Failure, failed_step: None, reason: Some(reason), result: None };
        }
        if steps().all(|t| t.state == TaskState::Success) {
            let last = record.stages.last().map(|s| s.iter().map(|t| t.result.clone()).collect());
            return Self { state: WorkflowState::Success, failed_step: None, reason: None, result: last.map(previous) };
        }
        Self { state: WorkflowState::Running, failed_step: None, reason: None, result: None }
    }
}

/// Most bytes of results a stage passes on in all: the JSON of its results
/// times the steps of the next stage, each of which gets a copy in its
/// args. Default 64 MiB: a chord of 1,000 results of 1 MiB each would
/// otherwise write a gigabyte into every step after it.
pub const MAX_PASSED_BYTES: usize = 64 << 20;

/// What a stage that succeeded passes on to the next.
#[derive(Debug, Clone, PartialEq)]
pub enum Passed {
    /// Its results ([`previous`]).
    Results(Value),
    /// Too large to pass on ([`MAX_PASSED_BYTES`]): why. The next stage's
    /// steps fail without running (reason `too-large`).
    TooLarge(String),
}

impl Passed {
    /// What a stage answering `results` passes on to the `steps` of the next.
    pub fn new(results: Vec<Option<String>>, steps: usize) -> Self {
        let bytes =
            results.iter().map(|r| r.as_ref().map_or(4, String::len).saturating_add(1)).fold(0, usize::saturating_add);
        if bytes.saturating_mul(steps) > MAX_PASSED_BYTES {
            return Self::TooLarge(format!(
                "the results of the stage before, {bytes} bytes to each of {steps} steps, are more than the \
                 {MAX_PASSED_BYTES} bytes a stage may pass on"
            ));
        }
        Self::Results(previous(results))
    }
}

/// What a stage's steps answered, as the next stage gets it: one result as
/// itself, several as a list in step order. A result that is not JSON (no
/// job of ours answers one) goes as a string; none as `null`.
pub fn previous(results: Vec<Option<String>>) -> Value {
    let mut values: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Some(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            None => Value::Null,
        })
        .collect();
    if values.len() == 1 { values.remove(0) } else { Value::Array(values) }
}

/// A step's args (a JSON object, as checked when it was queued) with the
/// results of the stage before it under [`PREVIOUS`].
pub fn with_previous(args: &str, previous: &Value) -> Result<String, StoreError> {
    let mut object: serde_json::Map<String, Value> =
        serde_json::from_str(args).map_err(|e| StoreError::Corrupt(format!("a workflow step's args: {e}")))?;
    object.insert(PREVIOUS.to_owned(), previous.clone());
    Ok(Value::Object(object).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_result_passes_as_itself_and_several_as_a_list_in_order() {
        assert_eq!(previous(vec![Some("5".into())]), serde_json::json!(5));
        assert_eq!(
            previous(vec![Some("1".into()), None, Some(r#"{"a":2}"#.into())]),
            serde_json::json!([1, null, {"a": 2}])
        );
        assert_eq!(previous(vec![Some("not json".into())]), serde_json::json!("not json"));
    }

    #[test]
    fn the_previous_results_join_the_args_under_their_key() {
        let args = with_previous(r#"{"add": 1, "previous": "overwritten"}"#, &serde_json::json!([1, 2])).unwrap();
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(args, serde_json::json!({"add": 1, "previous": [1, 2]}));
        assert!(with_previous("[1]", &Value::Null).is_err());
    }

    #[test]
    fn results_too_large_to_copy_into_every_next_step_are_not_passed_on() {
        let big = Some("1".repeat(1 << 20));
        assert!(matches!(Passed::new(vec![big.clone()], 60), Passed::Results(_)));
        assert!(matches!(Passed::new(vec![big; 2], 40), Passed::TooLarge(_)));
        assert!(matches!(Passed::new(vec![None; 1000], 1000), Passed::Results(_)));
        assert!(matches!(Passed::new(vec![Some("1".into())], usize::MAX), Passed::TooLarge(_)));
    }
}
