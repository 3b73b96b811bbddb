//! iamsweep: finds IAM managed policies attached to users both directly and through a group,
//! across many AWS accounts, and detaches the direct attachment only while a group still grants
//! it — verified live, journaled in SQLite, resumable and reversible.

pub mod app;
pub mod apply;
pub mod aws;
pub mod calls;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod diff;
pub mod doctor;
pub mod events;
pub mod exceptions;
pub mod filters;
pub mod findings;
pub mod limiter;
pub mod lock;
pub mod model;
pub mod organization;
pub mod pacer;
pub mod progress;
pub mod publish;
pub mod report;
pub mod rollback;
pub mod run;
pub mod scan;
pub mod store;
