//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one controller replica
//! acts at a time. The decision is pure ([`decide`]); the loop around it does the I/O, and
//! [`Leadership`] tells every reconcile whether it may act.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// What to do with the lease.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// We hold it: renew it.
    Renew,
    /// Someone else holds it; look again after this long.
    Wait(Duration),
}

/// The lease's timing: how long a holder's claim lasts, how long a leader keeps trying to
/// renew before it stops acting (below the duration, so that it stops before anyone may take
/// over), how often it renews, and how long one request may take.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub request_timeout: Duration,
}

/// As client-go's defaults, scaled: 15 s / 10 s / 2 s.
pub const TIMING: Timing = Timing {
    duration: Duration::from_secs(15),
    renew_deadline: Duration::from_secs(10),
    retry_period: Duration::from_secs(2),
    request_timeout: Duration::from_secs(2),
};

/// Decides from the lease as read. `unchanged_for` is how long this instance has seen the
/// record unchanged, by its own clock: expiry is judged by locally observed time, as client-go
/// does, never by comparing the holder's renewTime with this machine's clock (which may be
/// skewed).
pub fn decide(lease: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            match duration.checked_sub(unchanged_for) {
                Some(left) if !left.is_zero() => Decision::Wait(left),
                _ => Decision::Acquire,
            }
        }
    }
}

/// Whether this instance may act: it holds the lease, and renewed it recently enough that
/// nobody else can have taken it. Every reconcile asks before it acts, so an instance that
/// was frozen (SIGSTOP, a long GC pause, a partition) past its lease does nothing when it
/// wakes up, even before its renew loop notices.
#[derive(Debug)]
pub struct Leadership {
    /// Until when the last renewal holds (sent at t, it holds until t + renew deadline).
    until: Mutex<Option<Instant>>,
    /// Without leader election an instance always may act.
    always: bool,
}

impl Leadership {
    pub fn always() -> Self {
        Self {
            until: Mutex::new(None),
            always: true,
        }
    }

    pub fn elected() -> Self {
        Self {
            until: Mutex::new(None),
            always: false,
        }
    }

    pub fn held(&self) -> bool {
        self.always
            || self
                .until
                .lock()
                .ok()
                .and_then(|u| *u)
                .is_some_and(|u| Instant::now() < u)
    }

    fn renewed(&self, sent_at: Instant, deadline: Duration) {
        if let Ok(mut u) = self.until.lock() {
            *u = Some(sent_at + deadline);
        }
    }

    fn lost(&self) {
        if let Ok(mut u) = self.until.lock() {
            *u = None;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading or writing the leader Lease {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the leader Lease {namespace}/{name} did not answer within {after:?}")]
    Timeout {
        namespace: String,
        name: String,
        after: Duration,
    },
    #[error("lost the leader Lease {namespace}/{name} to {holder}")]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
}

pub struct Elector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timing: Timing,
    leadership: Arc<Leadership>,
    /// The record last read (holder, renewTime, resourceVersion) and when this instance first
    /// saw it, by its own clock.
    observed: Mutex<Option<(String, Instant)>>,
}

impl Elector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        leadership: Arc<Leadership>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timing: TIMING,
            leadership,
            observed: Mutex::new(None),
        }
    }

    /// How long the record `key` has been seen unchanged.
    fn unchanged_for(&self, key: String) -> Duration {
        let Ok(mut observed) = self.observed.lock() else {
            return Duration::ZERO;
        };
        match observed.as_ref() {
            Some((seen, since)) if *seen == key => since.elapsed(),
            _ => {
                *observed = Some((key, Instant::now()));
                Duration::ZERO
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::Timeout {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            after: self.timing.request_timeout,
        }
    }

    fn api_err(&self, source: kube::Error) -> Error {
        Error::Api {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// One step: read the lease and take or renew it if we may. Returns whether we hold it now,
    /// or how long to wait.
    async fn try_once(&self) -> Result<Result<(), Duration>, Error> {
        let sent_at = Instant::now();
        let now = Timestamp::now();
        let current =
            tokio::time::timeout(self.timing.request_timeout, self.api.get_opt(&self.name))
                .await
                .map_err(|_| self.timed_out())?
                .map_err(|e| self.api_err(e))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let key = format!(
            "{:?}/{:?}/{:?}",
            spec.and_then(|s| s.holder_identity.as_ref()),
            spec.and_then(|s| s.renew_time.as_ref()),
            current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.as_ref())
        );
        let decision = decide(spec, &self.identity, self.unchanged_for(key));
        let (mut lease, transitions) = match (&decision, current) {
            (Decision::Wait(left), _) => return Ok(Err(*left)),
            (_, None) => (
                Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        ..Default::default()
                    },
                    spec: None,
                },
                0,
            ),
            (_, Some(l)) => {
                let t = l
                    .spec
                    .as_ref()
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0);
                (l, t)
            }
        };
        let existed = lease.metadata.resource_version.is_some();
        let old = lease.spec.take().unwrap_or_default();
        let acquire = decision == Decision::Acquire;
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.timing.duration.as_secs() as i32),
            acquire_time: if acquire {
                Some(MicroTime(now))
            } else {
                old.acquire_time
            },
            renew_time: Some(MicroTime(now)),
            // As client-go counts them: every change of holder of an existing lease.
            lease_transitions: Some(if acquire && existed {
                transitions + 1
            } else {
                transitions
            }),
            ..old
        });
        let write = async {
            if lease.metadata.resource_version.is_some() {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            } else {
                self.api.create(&PostParams::default(), &lease).await
            }
        };
        let written = tokio::time::timeout(self.timing.request_timeout, write)
            .await
            .map_err(|_| self.timed_out())?;
        match written {
            Ok(_) => {
                // Held from when the request was sent: a slow answer shortens the claim.
                self.leadership.renewed(sent_at, self.timing.renew_deadline);
                Ok(Ok(()))
            }
            // Someone else wrote first: read again on the next step.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Err(Duration::from_secs(1))),
            Err(e) => Err(self.api_err(e)),
        }
    }

    /// Waits until this instance holds the lease. Returns false if `shutdown` fired first.
    pub async fn acquire(&self, shutdown: &mut watch::Receiver<bool>) -> Result<bool, Error> {
        loop {
            let wait = match self.try_once().await {
                Ok(Ok(())) => {
                    tracing::info!(lease = %self.name, namespace = %self.namespace, identity = %self.identity, "became leader");
                    return Ok(true);
                }
                Ok(Err(wait)) => wait,
                Err(e) => {
                    tracing::warn!(error = %e, "leader election attempt failed; retrying");
                    Duration::from_secs(2)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.min(Duration::from_secs(5))) => {}
                _ = shutdown.changed() => return Ok(false),
            }
        }
    }

    /// Renews the lease until it cannot be renewed within the renew deadline (or someone else
    /// holds it), then returns why. From then on [`Leadership::held`] is false.
    pub async fn keep(&self) -> Error {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.timing.retry_period).await;
            let err = match self.try_once().await {
                Ok(Ok(())) => {
                    last_renewed = Instant::now();
                    continue;
                }
                Ok(Err(_)) => {
                    let holder = self
                        .api
                        .get_opt(&self.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.spec.and_then(|s| s.holder_identity))
                        .unwrap_or_default();
                    self.leadership.lost();
                    return Error::Lost {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        holder,
                    };
                }
                Err(e) => e,
            };
            if last_renewed.elapsed() >= self.timing.renew_deadline {
                self.leadership.lost();
                return err;
            }
            tracing::warn!(error = %err, "renewing the leader lease failed; retrying");
        }
    }

    /// Gives the lease up so that a successor need not wait for it to expire.
    pub async fn release(&self) {
        self.leadership.lost();
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        if let Err(e) = self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            tracing::warn!(error = %e, "releasing the leader lease failed; it will expire");
        } else {
            tracing::info!(lease = %self.name, "released the leader lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(100).unwrap())),
            ..Default::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn takes_a_missing_or_released_lease() {
        assert_eq!(decide(None, "me", secs(0)), Decision::Acquire);
        assert_eq!(decide(Some(&lease(None)), "me", secs(0)), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease(Some(""))), "me", secs(0)),
            Decision::Acquire
        );
    }

    #[test]
    fn renews_its_own() {
        assert_eq!(
            decide(Some(&lease(Some("me"))), "me", secs(99)),
            Decision::Renew
        );
    }

    #[test]
    fn expiry_is_judged_by_how_long_the_record_stood_still_here() {
        // Whatever the renewTime says (a skewed clock), only the local observation counts.
        let other = lease(Some("other"));
        assert_eq!(
            decide(Some(&other), "me", secs(5)),
            Decision::Wait(secs(10))
        );
        assert_eq!(decide(Some(&other), "me", secs(15)), Decision::Acquire);
    }

    #[test]
    fn the_renew_deadline_is_below_the_lease_duration() {
        assert!(TIMING.renew_deadline + TIMING.request_timeout <= TIMING.duration);
        assert!(TIMING.retry_period < TIMING.renew_deadline);
    }

    #[tokio::test(start_paused = true)]
    async fn leadership_holds_until_the_renew_deadline_only() {
        let l = Leadership::elected();
        assert!(!l.held());
        l.renewed(Instant::now(), TIMING.renew_deadline);
        assert!(l.held());
        tokio::time::advance(secs(9)).await;
        assert!(l.held());
        tokio::time::advance(secs(2)).await;
        assert!(!l.held(), "a leader that could not renew stops acting");
        assert!(Leadership::always().held());
    }
}
