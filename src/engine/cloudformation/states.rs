//! What to do with a stack in each state CloudFormation can leave it in. Pure, so that the
//! states no emulator produces (rollbacks, failed deletes) are tested in memory.

/// The next step before planning a change set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeforePlan {
    /// No stack (or one only reviewed, never created): a CREATE change set.
    Create,
    /// A stack that can take an UPDATE change set.
    Update,
    /// An operation is under way; look again later.
    Wait,
    /// A create that failed and rolled back leaves an empty stack that can only be deleted:
    /// delete it, then create it again.
    DeleteAndRecreate,
    /// An update whose rollback failed: continue the rollback, then update.
    ContinueRollback,
    /// Nothing Landform can do by itself; the message says what the user can.
    Refuse(String),
}

/// The next step of a destroy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BeforeDestroy {
    /// Nothing to delete.
    Gone,
    Wait,
    Delete,
}

/// How a stack operation that was started stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    InProgress,
    Succeeded,
    /// It ended, and not as asked; the stack state is in the message.
    Failed,
}

/// `*_IN_PROGRESS`, except REVIEW_IN_PROGRESS, which is a resting state (a stack created by a
/// change set that was never executed).
pub fn busy(status: &str) -> bool {
    status.ends_with("_IN_PROGRESS") && status != "REVIEW_IN_PROGRESS"
}

/// `status` is None when the stack does not exist.
pub fn before_plan(status: Option<&str>) -> BeforePlan {
    let Some(status) = status else {
        return BeforePlan::Create;
    };
    if busy(status) {
        return BeforePlan::Wait;
    }
    match status {
        "REVIEW_IN_PROGRESS" | "DELETE_COMPLETE" => BeforePlan::Create,
        "CREATE_COMPLETE"
        | "UPDATE_COMPLETE"
        | "UPDATE_ROLLBACK_COMPLETE"
        | "UPDATE_FAILED"
        | "IMPORT_COMPLETE"
        | "IMPORT_ROLLBACK_COMPLETE" => BeforePlan::Update,
        "ROLLBACK_COMPLETE" | "CREATE_FAILED" | "ROLLBACK_FAILED" => BeforePlan::DeleteAndRecreate,
        "UPDATE_ROLLBACK_FAILED" => BeforePlan::ContinueRollback,
        "DELETE_FAILED" => BeforePlan::Refuse(
            "the stack is in DELETE_FAILED: a delete of it did not finish; it can only be \
             deleted, which Landform retries when the object is deleted with destroyOnDelete, \
             or delete it yourself"
                .into(),
        ),
        other => BeforePlan::Refuse(format!(
            "the stack is in {other}, a state Landform does not change stacks from"
        )),
    }
}

pub fn before_destroy(status: Option<&str>) -> BeforeDestroy {
    match status {
        None | Some("DELETE_COMPLETE") => BeforeDestroy::Gone,
        Some(s) if busy(s) => BeforeDestroy::Wait,
        // DELETE_FAILED included: deleting again is the retry.
        Some(_) => BeforeDestroy::Delete,
    }
}

/// The progress of a create or update (an executed change set).
pub fn apply_progress(status: &str) -> Progress {
    match status {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => Progress::Succeeded,
        // Cleanup after a successful update: the update itself succeeded.
        "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS" => Progress::Succeeded,
        s if busy(s) => Progress::InProgress,
        _ => Progress::Failed,
    }
}

/// The progress of a delete; `None` when the stack is gone.
pub fn delete_progress(status: Option<&str>) -> Progress {
    match status {
        None | Some("DELETE_COMPLETE") => Progress::Succeeded,
        Some(s) if busy(s) => Progress::InProgress,
        Some(_) => Progress::Failed,
    }
}

/// The progress of ContinueUpdateRollback.
pub fn rollback_progress(status: &str) -> Progress {
    match status {
        "UPDATE_ROLLBACK_COMPLETE" => Progress::Succeeded,
        s if busy(s) => Progress::InProgress,
        _ => Progress::Failed,
    }
}

/// Status reasons of a change set that holds no changes. CloudFormation fails such a change set
/// rather than creating an empty one; some endpoints refuse it up front instead.
pub fn means_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

/// How long to wait before looking at a stack operation again: quick at first, then backing
/// off to once every 15 seconds, so that a long update costs few API calls.
pub fn poll_delay(attempt: u32) -> std::time::Duration {
    let ms = 500.0 * 1.5f64.powi(attempt.min(20) as i32);
    std::time::Duration::from_millis((ms as u64).clamp(500, 15_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_from_every_resting_state() {
        assert_eq!(before_plan(None), BeforePlan::Create);
        assert_eq!(before_plan(Some("REVIEW_IN_PROGRESS")), BeforePlan::Create);
        for s in [
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
            "IMPORT_COMPLETE",
        ] {
            assert_eq!(before_plan(Some(s)), BeforePlan::Update, "{s}");
        }
        for s in ["ROLLBACK_COMPLETE", "CREATE_FAILED", "ROLLBACK_FAILED"] {
            assert_eq!(before_plan(Some(s)), BeforePlan::DeleteAndRecreate, "{s}");
        }
        assert_eq!(
            before_plan(Some("UPDATE_ROLLBACK_FAILED")),
            BeforePlan::ContinueRollback
        );
        let BeforePlan::Refuse(why) = before_plan(Some("DELETE_FAILED")) else {
            panic!("DELETE_FAILED must be refused");
        };
        assert!(why.contains("DELETE_FAILED"), "{why}");
        assert!(matches!(
            before_plan(Some("IMPORT_ROLLBACK_FAILED")),
            BeforePlan::Refuse(_)
        ));
    }

    #[test]
    fn waits_while_anything_is_in_progress() {
        for s in [
            "CREATE_IN_PROGRESS",
            "UPDATE_IN_PROGRESS",
            "UPDATE_ROLLBACK_IN_PROGRESS",
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            "DELETE_IN_PROGRESS",
            "ROLLBACK_IN_PROGRESS",
            "IMPORT_IN_PROGRESS",
        ] {
            assert_eq!(before_plan(Some(s)), BeforePlan::Wait, "{s}");
            assert_eq!(before_destroy(Some(s)), BeforeDestroy::Wait, "{s}");
        }
    }

    #[test]
    fn destroys_retry_failed_deletes() {
        assert_eq!(before_destroy(None), BeforeDestroy::Gone);
        assert_eq!(before_destroy(Some("DELETE_COMPLETE")), BeforeDestroy::Gone);
        assert_eq!(before_destroy(Some("DELETE_FAILED")), BeforeDestroy::Delete);
        assert_eq!(
            before_destroy(Some("REVIEW_IN_PROGRESS")),
            BeforeDestroy::Delete
        );
        assert_eq!(delete_progress(None), Progress::Succeeded);
        assert_eq!(delete_progress(Some("DELETE_FAILED")), Progress::Failed);
        assert_eq!(
            delete_progress(Some("DELETE_IN_PROGRESS")),
            Progress::InProgress
        );
    }

    #[test]
    fn apply_ends_in_rollbacks_as_failures() {
        assert_eq!(apply_progress("CREATE_COMPLETE"), Progress::Succeeded);
        assert_eq!(
            apply_progress("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"),
            Progress::Succeeded
        );
        assert_eq!(apply_progress("CREATE_IN_PROGRESS"), Progress::InProgress);
        assert_eq!(
            apply_progress("UPDATE_ROLLBACK_IN_PROGRESS"),
            Progress::InProgress
        );
        for s in [
            "ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
            "UPDATE_ROLLBACK_FAILED",
            "ROLLBACK_FAILED",
            "CREATE_FAILED",
        ] {
            assert_eq!(apply_progress(s), Progress::Failed, "{s}");
        }
        assert_eq!(
            rollback_progress("UPDATE_ROLLBACK_COMPLETE"),
            Progress::Succeeded
        );
        assert_eq!(
            rollback_progress("UPDATE_ROLLBACK_FAILED"),
            Progress::Failed
        );
    }

    #[test]
    fn recognises_empty_change_sets() {
        assert!(means_no_changes(
            "The submitted information didn't contain changes. Submit different information to create a change set."
        ));
        assert!(means_no_changes("No updates are to be performed."));
        assert!(!means_no_changes(
            "Template format error: unsupported structure."
        ));
    }

    #[test]
    fn polling_backs_off_to_a_cap() {
        let delays: Vec<_> = (0..20).map(poll_delay).collect();
        assert_eq!(delays[0].as_millis(), 500);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(delays[19].as_secs(), 15);
    }
}
