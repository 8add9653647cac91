//! Objects waiting for a run slot, in the order they began to wait. A freed slot goes to the
//! oldest waiter whose namespace has room: it is woken (not polled) and the slot is kept for
//! it, so an object that did not wait cannot take it first. A woken waiter that does not come
//! for its slot in time (deleted, suspended) gives up its place. Pure.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a woken waiter's slot is kept for it.
pub const CLAIM_WITHIN: Duration = Duration::from_secs(30);

/// An object (by kind, namespace and name) waiting for a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Default)]
pub struct Queue {
    /// Oldest first; `Some(when)` once woken.
    waiting: VecDeque<(Waiter, Option<Instant>)>,
}

/// Slots in use, in all and per namespace, and the limits.
pub struct Use<'a> {
    pub total: usize,
    pub in_namespace: Box<dyn Fn(&str) -> usize + 'a>,
    pub limit: usize,
    pub limit_per_namespace: usize,
}

impl Queue {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether `w` may take a free slot now: only if the waiters before it (all of them, if it
    /// does not wait) whose namespaces have room leave one over. Otherwise it waits, keeping
    /// its place if it had one.
    /// Refused, it says how many free slots are kept for the waiters before it.
    pub fn admit(&mut self, w: &Waiter, slots: &Use, now: Instant) -> Result<(), usize> {
        self.expire(now);
        if slots.total >= slots.limit
            || (slots.in_namespace)(&w.namespace) >= slots.limit_per_namespace
        {
            self.wait(w);
            return Err(0);
        }
        let ahead = self.eligible(slots, w);
        if slots.total + ahead < slots.limit {
            self.waiting.retain(|(x, _)| x != w);
            Ok(())
        } else {
            self.wait(w);
            Err(slots.limit - slots.total)
        }
    }

    /// `w` no longer wants a slot (deleted).
    pub fn leave(&mut self, w: &Waiter) {
        self.waiting.retain(|(x, _)| x != w);
    }

    /// The waiters to wake now: the oldest not yet woken whose namespaces have room, as many
    /// as there are free slots not kept for waiters woken before.
    pub fn wake(&mut self, slots: &Use, now: Instant) -> Vec<Waiter> {
        self.expire(now);
        let free = slots.limit.saturating_sub(slots.total);
        let chosen: Vec<usize> = self.with_room(slots).take(free).collect();
        let mut woken = vec![];
        for i in chosen {
            if let Some((w, at @ None)) = self.waiting.get_mut(i) {
                *at = Some(now);
                woken.push(w.clone());
            }
        }
        woken
    }

    fn wait(&mut self, w: &Waiter) {
        if !self.waiting.iter().any(|(x, _)| x == w) {
            self.waiting.push_back((w.clone(), None));
        }
    }

    /// How many waiters before `me` (all, if it does not wait) could take a slot now.
    fn eligible(&self, slots: &Use, me: &Waiter) -> usize {
        let mine = self
            .waiting
            .iter()
            .position(|(w, _)| w == me)
            .unwrap_or(self.waiting.len());
        self.with_room(slots).take_while(|&i| i < mine).count()
    }

    /// The waiters, oldest first, that would get a slot if slots went in line: those whose
    /// namespace has room, counting the ones before them in the same namespace.
    fn with_room<'q>(&'q self, slots: &'q Use) -> impl Iterator<Item = usize> + 'q {
        let mut before: HashMap<&'q str, usize> = HashMap::new();
        self.waiting
            .iter()
            .enumerate()
            .filter_map(move |(i, (w, _))| {
                let ns = w.namespace.as_str();
                let used = (slots.in_namespace)(ns) + before.get(ns).unwrap_or(&0);
                (used < slots.limit_per_namespace).then(|| {
                    *before.entry(ns).or_default() += 1;
                    i
                })
            })
    }

    fn expire(&mut self, now: Instant) {
        self.waiting
            .retain(|(_, at)| at.is_none_or(|t| now.duration_since(t) < CLAIM_WITHIN));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(ns: &str, name: &str) -> Waiter {
        Waiter {
            kind: "Terraform",
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn none(_: &str) -> usize {
        0
    }

    fn slots<'a>(total: usize, in_namespace: &'a dyn Fn(&str) -> usize) -> Use<'a> {
        Use {
            total,
            in_namespace: Box::new(in_namespace),
            limit: 2,
            limit_per_namespace: 1,
        }
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() {
        let mut q = Queue::default();
        let now = Instant::now();
        let full = |_: &str| 1;
        // Both slots taken: a and b wait, in that order.
        assert!(q.admit(&w("x", "a"), &slots(2, &full), now).is_err());
        assert!(q.admit(&w("y", "b"), &slots(2, &full), now).is_err());
        assert!(q.admit(&w("x", "a"), &slots(2, &full), now).is_err());
        assert_eq!(q.len(), 2);
        // One slot frees: a is woken, and the slot is kept for it.
        assert_eq!(q.wake(&slots(1, &none), now), [w("x", "a")]);
        assert_eq!(q.wake(&slots(1, &none), now), []);
        assert_eq!(q.admit(&w("z", "newcomer"), &slots(1, &none), now), Err(1));
        assert!(q.admit(&w("y", "b"), &slots(1, &none), now).is_err());
        assert!(q.admit(&w("x", "a"), &slots(1, &none), now).is_ok());
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn a_full_namespace_does_not_hold_up_the_others() {
        let mut q = Queue::default();
        let now = Instant::now();
        let x_full = |ns: &str| usize::from(ns == "x");
        assert!(q.admit(&w("x", "a"), &slots(2, &x_full), now).is_err());
        assert!(q.admit(&w("y", "b"), &slots(2, &x_full), now).is_err());
        // A slot frees outside x: b, whose namespace has room, gets it before older a.
        assert_eq!(q.wake(&slots(1, &x_full), now), [w("y", "b")]);
        assert!(q.admit(&w("y", "b"), &slots(1, &x_full), now).is_ok());
    }

    #[test]
    fn a_woken_waiter_that_never_comes_gives_up_its_place() {
        let mut q = Queue::default();
        let now = Instant::now();
        let full = |_: &str| 1;
        assert!(q.admit(&w("x", "gone"), &slots(2, &full), now).is_err());
        assert!(q.admit(&w("y", "next"), &slots(2, &full), now).is_err());
        assert_eq!(q.wake(&slots(1, &none), now), [w("x", "gone")]);
        let later = now + CLAIM_WITHIN;
        assert_eq!(q.wake(&slots(1, &none), later), [w("y", "next")]);
        q.leave(&w("y", "next"));
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn with_room_and_no_one_waiting_a_slot_is_taken_at_once() {
        let mut q = Queue::default();
        assert!(
            q.admit(&w("x", "a"), &slots(0, &none), Instant::now())
                .is_ok()
        );
        assert_eq!(q.len(), 0);
    }
}
