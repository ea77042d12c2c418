//! Workflows on the wire (`/v1/workflows`, [`crate::workflow`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::QueueRequest;
use crate::store::TaskState;
use crate::workflow::{Workflow as Summary, WorkflowRecord, WorkflowState};

/// The body of `POST /v1/workflows`: one of four shapes, each a sequence
/// of stages. A step is a task as `POST /v1/tasks` takes it; a step of a
/// later stage gets the results of the stage before it in its args under
/// `previous` (one value after a stage of one step, a list in step order
/// after several), and may not be delayed, timed or expiring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowRequest {
    /// Steps one after the other, each getting the result of the one before.
    Chain(Vec<QueueRequest>),
    /// Steps at once; the workflow's result is the list of their results.
    Group(Vec<QueueRequest>),
    /// A group, then a callback getting the list of the group's results.
    Chord { group: Vec<QueueRequest>, callback: QueueRequest },
    /// Stages in order, each of steps run at once.
    Stages(Vec<Vec<QueueRequest>>),
}

impl WorkflowRequest {
    /// The workflow's stages.
    pub fn stages(self) -> Vec<Vec<QueueRequest>> {
        match self {
            Self::Chain(steps) => steps.into_iter().map(|step| vec![step]).collect(),
            Self::Group(steps) => vec![steps],
            Self::Chord { group, callback } => vec![group, vec![callback]],
            Self::Stages(stages) => stages,
        }
    }
}

/// A workflow started: `201`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStarted {
    #[schema(example = "7")]
    pub id: String,
    /// Its steps' task ids, stage by stage.
    pub stages: Vec<Vec<String>>,
}

/// A step of a workflow: its task, and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStep {
    pub id: String,
    pub job: String,
    pub state: TaskState,
    /// `workflow` while it waits for the stage before it; `upstream` when
    /// revoked because a step before it did not succeed.
    pub reason: Option<String>,
    pub attempt: u32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub result: Option<Value>,
    /// Why it failed: the job's error, or the trap's.
    pub error: Option<String>,
}

/// The answer of `GET /v1/workflows/{id}`: the workflow as its steps say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Workflow {
    pub id: String,
    pub state: WorkflowState,
    /// Why it failed: the step that did, its state, reason and error.
    pub reason: Option<String>,
    /// The step that failed it.
    pub failed_step: Option<String>,
    /// Once it succeeded: its last stage's results (one value, or a list).
    pub result: Option<Value>,
    /// In ms since the epoch.
    pub created_at: i64,
    /// Its steps, stage by stage.
    pub stages: Vec<Vec<WorkflowStep>>,
}

impl From<WorkflowRecord> for Workflow {
    fn from(record: WorkflowRecord) -> Self {
        let Summary { state, failed_step, reason, result } = Summary::state(&record);
        let json = |text: &String| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()));
        let stages = record
            .stages
            .iter()
            .map(|stage| {
                stage
                    .iter()
                    .map(|t| WorkflowStep {
                        id: t.id.clone(),
                        job: t.job.clone(),
                        state: t.state,
                        reason: t.reason.clone(),
                        attempt: t.attempt,
                        started_at: t.started_at,
                        finished_at: t.finished_at,
                        result: t.result.as_ref().map(json),
                        error: t.error.clone(),
                    })
                    .collect()
            })
            .collect();
        Self { id: record.id, state, reason, failed_step, result, created_at: record.created_at, stages }
    }
}
