//! Outbound HTTP for jobs (`wasi:http/outgoing-handler`), under an egress
//! policy that denies by default.
//!
//! - [`policy`]: the allow-lists of hosts a tenant's admin sets and a job
//!   may narrow.
//! - [`network`]: the addresses a request may connect to, whatever a name
//!   resolves to (the public internet, plus what the operator names).
//! - [`send`]: the hook every request goes through, with the per-task
//!   limits and the usage it reports.

pub mod network;
pub mod policy;
pub mod send;

pub use self::network::Networks;
pub use self::policy::{AllowList, RuleError, Scheme};
pub use self::send::{Egress, EgressConfig, EgressError, Grant, HttpLimits, HttpUsage, TaskHttp};
