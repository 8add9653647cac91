//! The CloudFormation engine. A plan is a change set (named from the plan ID, so an approval
//! names exactly one), apply executes that change set, destroy deletes the stack, and a drift
//! check compares the stack with the desired template and parameters.
//!
//! - [`run`]: one run, from the run spec to its result;
//! - `operations` (plan, apply, destroy, outputs) and `stack` (waits, ownership, the deployed
//!   template) talk to the API; [`drift`] detects drift;
//! - pure parts: [`states`] (what to do in each stack state), [`changes`] (change sets and
//!   events into status), [`compare`] (templates and parameters);
//! - [`aws`] builds the clients and classifies API errors; [`error`] says what failed.
//!
//! This file holds what a run's steps share: its context and the desired state.

pub mod aws;
pub mod changes;
pub mod compare;
pub mod drift;
pub mod error;
mod operations;
pub mod run;
mod stack;
pub mod states;

use std::collections::BTreeMap;

use crate::contract::StackRun;
use aws::Aws;

/// Ownership tags Landform puts on the stacks it creates; a stack without them (or with
/// another object's) is only touched with `adoptExisting`.
pub const TAG_OWNER: &str = "landform.dev/owner";
pub const TAG_UID: &str = "landform.dev/uid";

/// What a run works on.
pub struct Ctx<'a> {
    pub aws: &'a Aws,
    pub stack: &'a StackRun,
    /// `<namespace>/<name>` of the object, the value of the ownership tag.
    pub owner: &'a str,
    pub uid: &'a str,
}

/// The desired template and parameters.
pub struct Desired<'a> {
    pub template: &'a str,
    pub params: &'a BTreeMap<String, String>,
    /// The ID of the plan's inputs: the run's work, the artifact and the parameters'
    /// stand-ins (see [`crate::contract::plan_id`]). It names the change set; the plan ID
    /// binds it to the change set's changes.
    pub inputs_id: String,
}
