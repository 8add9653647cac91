//! From the outcome of one reconciliation to the next status, event and requeue. Pure: no I/O,
//! the clock is an argument.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::backoff;
use super::validate::{DEFAULT_MAX_RETRIES, DEFAULT_RETRY_INTERVAL, Timing};
use crate::api::{
    ConditionStatus as S, ConditionType as C, ObjectStatus, find_condition, remove_condition,
    set_condition,
};

/// How one reconciliation ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Waiting for something that is not a failure (a source not ready yet, a run in flight).
    Progressing {
        reason: &'static str,
        message: String,
        requeue: Duration,
    },
    /// A routine run in flight (a plan or drift check of what is already settled, or a retry
    /// of a failure): `Reconciling` says so, while `Ready` keeps its last word, so that
    /// looking again changes nothing users read and records no event. Reads as
    /// [`Outcome::Progressing`] when there is no last word for this generation.
    Checking {
        reason: &'static str,
        message: String,
        requeue: Duration,
    },
    /// Done: the infrastructure matches the desired state.
    Ready {
        reason: &'static str,
        message: String,
        requeue: Duration,
    },
    /// Waiting for a person (approval); not a failure, nothing to retry until the spec changes.
    Blocked {
        reason: &'static str,
        message: String,
        warning: bool,
    },
    /// `spec.suspend` is set.
    Suspended,
    /// A step failed.
    Failed {
        reason: &'static str,
        message: String,
        /// False when retrying cannot help until the spec changes.
        retryable: bool,
    },
}

/// Retry settings of one object.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
    /// 0: never give up.
    pub max_retries: u32,
    pub seed: u64,
}

impl RetryPolicy {
    /// The policy of an object with this `timing` (the defaults when its spec is invalid), and
    /// a jitter seeded by its UID, so that objects failing together do not retry together.
    pub fn new(timing: Option<&Timing>, uid: &str) -> Self {
        let (base, cap, max_retries) = match timing {
            Some(t) => (
                t.retry_interval,
                t.interval.max(t.retry_interval),
                t.max_retries,
            ),
            None => (
                DEFAULT_RETRY_INTERVAL,
                Duration::from_secs(600),
                DEFAULT_MAX_RETRIES,
            ),
        };
        Self {
            base,
            cap,
            max_retries,
            seed: backoff::seed(uid),
        }
    }
}

/// An event to record about the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    pub warning: bool,
    pub reason: String,
    pub note: String,
    /// The same as the last event of this reason about the object: counted in that event's
    /// series rather than recorded anew.
    pub repeat: bool,
}

impl EventSpec {
    pub fn normal(reason: &str, note: impl Into<String>) -> Self {
        Self {
            warning: false,
            reason: reason.into(),
            note: note.into(),
            repeat: false,
        }
    }

    pub fn warning(reason: &str, note: impl Into<String>) -> Self {
        Self {
            warning: true,
            ..Self::normal(reason, note)
        }
    }
}

/// Sets a condition other than the kstatus ones (Planned, Applied, Drifted), which record the
/// last plan, apply and drift check next to Ready.
pub fn mark(status: &mut ObjectStatus, type_: C, st: S, reason: &str, message: &str, now: Time) {
    let generation = status.observed_generation;
    set_condition(
        &mut status.conditions,
        type_,
        st,
        reason,
        message,
        generation,
        now,
    );
}

/// What to write and when to look again.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    pub status: ObjectStatus,
    pub event: Option<EventSpec>,
    pub requeue: Option<Duration>,
}

/// Computes the status after `outcome`, starting from `previous`.
pub fn settle(
    previous: Option<&ObjectStatus>,
    generation: Option<i64>,
    outcome: Outcome,
    policy: &RetryPolicy,
    now: Time,
) -> Settled {
    let mut status = previous.cloned().unwrap_or_default();
    let before =
        find_condition(&status.conditions, C::Ready).map(|c| (c.status.clone(), c.reason.clone()));
    // A routine run keeps a settled Ready of this generation (see Outcome::Checking).
    let keeps_ready = matches!(outcome, Outcome::Checking { .. })
        && before.as_ref().is_some_and(|(st, _)| st != "Unknown")
        && status.observed_generation == generation;
    let was_stalled = find_condition(&status.conditions, C::Stalled).is_some();
    // A new generation is a fresh start: earlier failures say nothing about the new spec.
    if status.observed_generation != generation {
        status.failures = 0;
        status.last_failure_time = None;
    }
    status.observed_generation = generation;
    // Suspension is the user's own doing, shown by its condition: an event would only echo it.
    let quiet = matches!(outcome, Outcome::Suspended);
    let failed = matches!(outcome, Outcome::Failed { .. });
    let conds = &mut status.conditions;
    let mut event_note = None;
    // Blocked outcomes say themselves whether they deserve a warning; else False warns.
    let mut warning = None;

    let requeue = match outcome {
        Outcome::Progressing {
            reason,
            message,
            requeue,
        }
        | Outcome::Checking {
            reason,
            message,
            requeue,
        } => {
            if !keeps_ready {
                set_condition(
                    conds,
                    C::Ready,
                    S::Unknown,
                    reason,
                    &message,
                    generation,
                    now.clone(),
                );
                remove_condition(conds, C::Stalled);
            }
            set_condition(
                conds,
                C::Reconciling,
                S::True,
                reason,
                &message,
                generation,
                now,
            );
            // Not a success: a retry is a run in flight, so the failures it retries still
            // count (only success, a new generation or a new artifact starts afresh).
            Some(requeue)
        }
        Outcome::Ready {
            reason,
            message,
            requeue,
        } => {
            set_condition(conds, C::Ready, S::True, reason, &message, generation, now);
            remove_condition(conds, C::Reconciling);
            remove_condition(conds, C::Stalled);
            status.failures = 0;
            status.last_failure_time = None;
            Some(requeue)
        }
        Outcome::Blocked {
            reason,
            message,
            warning: warn,
        } => {
            set_condition(conds, C::Ready, S::False, reason, &message, generation, now);
            remove_condition(conds, C::Reconciling);
            remove_condition(conds, C::Stalled);
            status.failures = 0;
            status.last_failure_time = None;
            warning = Some(warn);
            None
        }
        Outcome::Suspended => {
            remove_condition(conds, C::Reconciling);
            if find_condition(conds, C::Ready).is_none() {
                let msg = "Reconciliation is suspended (spec.suspend is true)";
                set_condition(
                    conds,
                    C::Ready,
                    S::Unknown,
                    "Suspended",
                    msg,
                    generation,
                    now,
                );
            }
            None
        }
        Outcome::Failed {
            reason,
            message,
            retryable,
        } => {
            status.failures = status.failures.saturating_add(1);
            status.last_failure_time = Some(now.clone());
            remove_condition(conds, C::Reconciling);
            let gave_up =
                !retryable || (policy.max_retries > 0 && status.failures >= policy.max_retries);
            if gave_up {
                let why = if retryable {
                    format!(
                        "{message} (gave up after {} attempts; change the spec or the source to try again)",
                        status.failures
                    )
                } else {
                    format!("{message} (fix the spec to continue)")
                };
                set_condition(
                    conds,
                    C::Ready,
                    S::False,
                    reason,
                    &why,
                    generation,
                    now.clone(),
                );
                set_condition(conds, C::Stalled, S::True, reason, &why, generation, now);
                None
            } else {
                let wait = backoff::delay(policy.base, policy.cap, status.failures, policy.seed);
                // The condition keeps the plain message so that it only changes when the error
                // does; the retry detail goes to the event.
                set_condition(conds, C::Ready, S::False, reason, &message, generation, now);
                remove_condition(conds, C::Stalled);
                event_note = Some(format!(
                    "{message} (attempt {}, retrying in {}s)",
                    status.failures,
                    wait.as_secs().max(1)
                ));
                Some(wait)
            }
        }
    };

    let ready = find_condition(&status.conditions, C::Ready).cloned();
    let stalled = find_condition(&status.conditions, C::Stalled).is_some();
    // One event per change of state: Ready turning True, False or Unknown, or a new reason
    // while it is not True (another failure, another wait). True with another reason (in sync,
    // drifted) has events of its own. The same failure again counts in its event's series.
    let event = ready.filter(|_| !quiet).and_then(|r| {
        let changed = match &before {
            Some((st, reason)) => *st != r.status || (r.status != "True" && *reason != r.reason),
            None => true,
        };
        let gave_up = stalled && !was_stalled;
        let repeat = !changed && !gave_up && failed;
        (changed || repeat || gave_up).then(|| EventSpec {
            warning: warning.unwrap_or(r.status == "False"),
            reason: r.reason,
            note: event_note.unwrap_or(r.message),
            repeat,
        })
    });
    Settled {
        status,
        event,
        requeue,
    }
}

/// Whether the object is still backing off from earlier failures; `Some(wait)` if so.
pub fn backing_off(
    status: Option<&ObjectStatus>,
    generation: Option<i64>,
    policy: &RetryPolicy,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let status = status?;
    if status.observed_generation != generation || status.failures == 0 {
        return None;
    }
    let last = status.last_failure_time.as_ref()?;
    let since = Duration::try_from(now.duration_since(last.0)).unwrap_or(Duration::ZERO);
    backoff::remaining(policy.base, policy.cap, status.failures, policy.seed, since)
}

/// Whether the object gave up and waits for a new generation.
pub fn stalled(status: Option<&ObjectStatus>, generation: Option<i64>) -> bool {
    status.is_some_and(|s| {
        s.observed_generation == generation && find_condition(&s.conditions, C::Stalled).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base: Duration::from_secs(30),
        cap: Duration::from_secs(600),
        max_retries: 3,
        seed: 10, // no jitter
    };

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn failed(retryable: bool) -> Outcome {
        Outcome::Failed {
            reason: "ArtifactFailed",
            message: "digest mismatch".into(),
            retryable,
        }
    }

    fn cond(
        s: &ObjectStatus,
        t: C,
    ) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
        find_condition(&s.conditions, t)
    }

    #[test]
    fn progressing_sets_ready_unknown_and_reconciling() {
        let out = settle(
            None,
            Some(1),
            Outcome::Progressing {
                reason: "SourceNotReady",
                message: "waiting".into(),
                requeue: Duration::from_secs(5),
            },
            &POLICY,
            at(1),
        );
        assert_eq!(cond(&out.status, C::Ready).unwrap().status, "Unknown");
        assert_eq!(cond(&out.status, C::Reconciling).unwrap().status, "True");
        assert_eq!(out.status.observed_generation, Some(1));
        assert_eq!(out.requeue, Some(Duration::from_secs(5)));
        assert_eq!(out.event.unwrap().reason, "SourceNotReady");
    }

    #[test]
    fn failures_back_off_then_stall_with_one_event_per_change() {
        let first = settle(None, Some(1), failed(true), &POLICY, at(0));
        assert_eq!(first.status.failures, 1);
        assert_eq!(first.requeue, Some(Duration::from_secs(30)));
        assert!(first.event.as_ref().unwrap().warning);
        assert!(cond(&first.status, C::Stalled).is_none());

        let second = settle(Some(&first.status), Some(1), failed(true), &POLICY, at(30));
        assert_eq!(second.status.failures, 2);
        assert_eq!(second.requeue, Some(Duration::from_secs(60)));
        let again = second.event.expect("the same failure again is counted");
        assert!(
            again.repeat,
            "in the series of the first, not as a new event"
        );
        assert!(!first.event.as_ref().unwrap().repeat);

        let third = settle(Some(&second.status), Some(1), failed(true), &POLICY, at(90));
        assert_eq!(third.requeue, None);
        let stalled_cond = cond(&third.status, C::Stalled).unwrap();
        assert!(stalled_cond.message.contains("gave up after 3 attempts"));
        let gave_up = third.event.unwrap();
        assert!(gave_up.warning && !gave_up.repeat, "giving up is news");
        assert!(stalled(Some(&third.status), Some(1)));
        assert!(!stalled(Some(&third.status), Some(2)));
    }

    #[test]
    fn retries_in_flight_keep_counting_until_success() {
        let retrying = Outcome::Progressing {
            reason: "Planning",
            message: "Planning revision 1".into(),
            requeue: Duration::from_secs(2),
        };
        let mut status = None;
        for (attempt, at_s) in [(1, 0), (2, 40), (3, 120)] {
            let failed = settle(status.as_ref(), Some(1), failed(true), &POLICY, at(at_s));
            assert_eq!(failed.status.failures, attempt);
            assert_eq!(
                stalled(Some(&failed.status), Some(1)),
                attempt == POLICY.max_retries,
                "gives up after maxRetries attempts in a row"
            );
            let retry = settle(
                Some(&failed.status),
                Some(1),
                retrying.clone(),
                &POLICY,
                at(at_s + 30),
            );
            assert_eq!(
                retry.status.failures, attempt,
                "a retry in flight still counts"
            );
            status = Some(retry.status);
        }
        let status = status.unwrap();
        let done = settle(
            Some(&status),
            Some(1),
            Outcome::Ready {
                reason: "Applied",
                message: "ok".into(),
                requeue: Duration::from_secs(60),
            },
            &POLICY,
            at(500),
        );
        assert_eq!(done.status.failures, 0, "success starts afresh");
    }

    #[test]
    fn a_new_generation_resets_the_failure_count() {
        let first = settle(None, Some(1), failed(true), &POLICY, at(0));
        let next = settle(Some(&first.status), Some(2), failed(true), &POLICY, at(1));
        assert_eq!(next.status.failures, 1);
    }

    #[test]
    fn not_retryable_stalls_at_once() {
        let out = settle(None, Some(1), failed(false), &POLICY, at(0));
        assert!(
            cond(&out.status, C::Stalled)
                .unwrap()
                .message
                .contains("fix the spec")
        );
        assert_eq!(out.requeue, None);
    }

    #[test]
    fn backoff_survives_a_restart() {
        let first = settle(None, Some(1), failed(true), &POLICY, at(0));
        let now = jiff::Timestamp::from_second(10).unwrap();
        assert_eq!(
            backing_off(Some(&first.status), Some(1), &POLICY, now),
            Some(Duration::from_secs(20))
        );
        let later = jiff::Timestamp::from_second(31).unwrap();
        assert_eq!(
            backing_off(Some(&first.status), Some(1), &POLICY, later),
            None
        );
        assert_eq!(
            backing_off(Some(&first.status), Some(2), &POLICY, now),
            None
        );
    }

    #[test]
    fn suspension_keeps_ready_and_drops_reconciling() {
        let p = settle(
            None,
            Some(1),
            Outcome::Progressing {
                reason: "SourceNotReady",
                message: "waiting".into(),
                requeue: Duration::from_secs(5),
            },
            &POLICY,
            at(1),
        );
        let s = settle(Some(&p.status), Some(1), Outcome::Suspended, &POLICY, at(2));
        assert!(cond(&s.status, C::Reconciling).is_none());
        assert_eq!(cond(&s.status, C::Ready).unwrap().reason, "SourceNotReady");
        assert_eq!(s.requeue, None);
        assert_eq!(s.event, None);
        // A fresh object that is suspended says so in Ready, with no event.
        let fresh = settle(None, Some(1), Outcome::Suspended, &POLICY, at(1));
        assert_eq!(cond(&fresh.status, C::Ready).unwrap().reason, "Suspended");
        assert_eq!(fresh.event, None);
    }

    fn checking(reason: &'static str) -> Outcome {
        Outcome::Checking {
            reason,
            message: "Checking revision 1 for drift (run r)".into(),
            requeue: Duration::from_secs(2),
        }
    }

    fn ready(reason: &'static str) -> Outcome {
        Outcome::Ready {
            reason,
            message: "Applied revision 1".into(),
            requeue: Duration::from_secs(60),
        }
    }

    #[test]
    fn routine_checks_keep_ready_and_record_no_events() {
        let applied = settle(None, Some(1), ready("Applied"), &POLICY, at(0));
        assert_eq!(applied.event.as_ref().unwrap().reason, "Applied");
        let mut status = applied.status;
        for t in 1..50 {
            let check = settle(
                Some(&status),
                Some(1),
                checking("CheckingDrift"),
                &POLICY,
                at(t),
            );
            assert_eq!(cond(&check.status, C::Ready).unwrap().status, "True");
            assert_eq!(cond(&check.status, C::Ready).unwrap().reason, "Applied");
            assert_eq!(
                cond(&check.status, C::Reconciling).unwrap().reason,
                "CheckingDrift"
            );
            assert_eq!(check.event, None, "a check is not a change of state");
            let done = settle(
                Some(&check.status),
                Some(1),
                ready("Applied"),
                &POLICY,
                at(t),
            );
            assert!(cond(&done.status, C::Reconciling).is_none());
            assert_eq!(done.event, None, "nothing changed");
            status = done.status;
        }
        // A new generation has no last word yet: the check reads as progress.
        let fresh = settle(
            Some(&status),
            Some(2),
            checking("Planning"),
            &POLICY,
            at(99),
        );
        assert_eq!(cond(&fresh.status, C::Ready).unwrap().status, "Unknown");
        assert_eq!(fresh.event.unwrap().reason, "Planning");
    }

    #[test]
    fn a_retry_keeps_the_failure_in_ready() {
        let first = settle(None, Some(1), failed(true), &POLICY, at(0));
        let retry = settle(
            Some(&first.status),
            Some(1),
            checking("Planning"),
            &POLICY,
            at(30),
        );
        assert_eq!(
            cond(&retry.status, C::Ready).unwrap().reason,
            "ArtifactFailed"
        );
        assert_eq!(retry.event, None);
        // Succeeding is a change of state.
        let fixed = settle(
            Some(&retry.status),
            Some(1),
            ready("Applied"),
            &POLICY,
            at(40),
        );
        assert_eq!(fixed.event.unwrap().reason, "Applied");
        // Another failure reason is news too.
        let other = settle(
            Some(&retry.status),
            Some(1),
            Outcome::Failed {
                reason: "PlanFailed",
                message: "syntax".into(),
                retryable: true,
            },
            &POLICY,
            at(40),
        );
        assert!(!other.event.unwrap().repeat);
    }
}
