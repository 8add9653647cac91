//! Leader election on a `coordination.k8s.io/v1` Lease, so that only one controller replica
//! acts at a time. The decision is pure ([`decide`]); the loop around it does the I/O.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

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

/// Decides from the lease as read. A lease with no holder, or whose holder has not renewed
/// within its duration, may be taken.
pub fn decide(lease: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        None | Some("") => Decision::Acquire,
        Some(holder) if holder == me => Decision::Renew,
        Some(_) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
                return Decision::Acquire;
            };
            let age = now.duration_since(renewed.0);
            let age = Duration::try_from(age).unwrap_or(Duration::ZERO);
            match duration.checked_sub(age) {
                Some(left) if !left.is_zero() => Decision::Wait(left),
                _ => Decision::Acquire,
            }
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
    duration: Duration,
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            duration: Duration::from_secs(15),
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
        let now = Timestamp::now();
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.api_err(e))?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
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
            lease_duration_seconds: Some(self.duration.as_secs() as i32),
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
        let written = if lease.metadata.resource_version.is_some() {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Ok(Ok(())),
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

    /// Renews the lease until it cannot be renewed within its duration, then returns why.
    pub async fn keep(&self) -> Error {
        let renew_every = self.duration / 3;
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(renew_every).await;
            match self.try_once().await {
                Ok(Ok(())) => last_renewed = tokio::time::Instant::now(),
                Ok(Err(_)) => {
                    let holder = self
                        .api
                        .get_opt(&self.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.spec.and_then(|s| s.holder_identity))
                        .unwrap_or_default();
                    return Error::Lost {
                        namespace: self.namespace.clone(),
                        name: self.name.clone(),
                        holder,
                    };
                }
                Err(e) if last_renewed.elapsed() >= self.duration => return e,
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed; retrying"),
            }
        }
    }

    /// Gives the lease up so that a successor need not wait for it to expire.
    pub async fn release(&self) {
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

    fn lease(holder: Option<&str>, renewed_at: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed_at).unwrap())),
            ..Default::default()
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn takes_a_missing_or_released_lease() {
        assert_eq!(decide(None, "me", at(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&lease(None, 100)), "me", at(100)),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some(""), 100)), "me", at(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn renews_its_own() {
        assert_eq!(
            decide(Some(&lease(Some("me"), 90)), "me", at(100)),
            Decision::Renew
        );
    }

    #[test]
    fn waits_for_a_live_holder_and_takes_an_expired_one() {
        assert_eq!(
            decide(Some(&lease(Some("other"), 95)), "me", at(100)),
            Decision::Wait(Duration::from_secs(10))
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), 85)), "me", at(100)),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&lease(Some("other"), 80)), "me", at(100)),
            Decision::Acquire
        );
    }
}
