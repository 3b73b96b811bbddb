//! Live proofs that a group grants a policy to a user, read per group, not per user: a group's
//! members (`GetGroup`, every page) and its attached policies (`ListAttachedGroupPolicies`)
//! prove it for every member at once. A proof is relied on only while it is younger than
//! `proof_max_age`; an older one is read again first. When a group is so large that reading it
//! costs more than proving its few users one by one (`GetUser` + `ListGroupsForUser`), those
//! users are proven one by one. Users are matched as IAM matches names (case-insensitively) and
//! by their unique id.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::aws::{AwsError, ErrorKind, Iam};
use crate::calls::Metered;
use crate::findings::Finding;
use crate::model::{PolicyArn, UserName};

/// What a group's proof says.
#[derive(Debug)]
pub(super) struct GroupProof {
    /// The group's unique id: a group re-created under the same name is another grant.
    group_id: String,
    /// Members by lowercased name, with their unique ids.
    members: HashMap<String, String>,
    policies: HashSet<PolicyArn>,
    /// When the first of its reads was sent: the proof is as old as its oldest read.
    read_at: Instant,
}

/// A group's state as far as proofs go.
#[derive(Clone, Debug)]
enum Slot {
    Read(Arc<GroupProof>),
    /// More members than it is worth reading for the users relying on it (with the group's id
    /// as its first page gave it).
    TooLarge(String),
    /// The group does not exist (any more).
    Gone,
}

impl Slot {
    /// The group's unique id as read (`None` when gone, or not known).
    fn group_id(&self) -> Option<&str> {
        match self {
            Slot::Read(p) => Some(p.group_id.as_str()),
            Slot::TooLarge(id) => Some(id.as_str()),
            Slot::Gone => None,
        }
        .filter(|id| !id.is_empty())
    }
}

/// Whether a finding's policy is granted to its user through a group right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Coverage {
    /// `group` grants it, as proven by reads sent from `read_at` on.
    Covered { group: String, read_at: Instant },
    /// No group of the scan's covering groups grants it to the user any more.
    NotCovered,
    /// The user no longer exists.
    UserGone,
    /// A user of that name exists, but it is another principal (deleted and re-created).
    Recreated,
}

/// How fresh a proof must be to be relied on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fresh {
    /// Younger than `proof_max_age` (a detach about to leave).
    Young,
    /// Any this pass has read (whether a finding is worth an intent: the detach itself checks
    /// the proof's age right before it leaves).
    Cached,
    /// Read at or after this moment (the post-check, which must read after the settle window;
    /// a retry after a concurrent change).
    Since(Instant),
}

/// One user's own reads, for the users proven one by one.
#[derive(Clone, Debug)]
struct UserReads {
    user_id: String,
    groups: Vec<String>,
    read_at: Instant,
}

/// The proofs of one account's apply: read on demand, shared by its workers, refreshed when
/// too old. One refresh per group at a time.
pub(super) struct Proofs<'a, I> {
    iam: &'a Metered<I>,
    max_age: Duration,
    /// Findings still relying on each group (lowercased name): what a group read is worth.
    demand: HashMap<String, usize>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Slot>>>>>,
    /// Group policies read on their own, for users proven one by one.
    policies: Mutex<HashMap<String, (Instant, Policies)>>,
    /// Users looked up alone (`GetUser`, to tell a deleted or re-created user from a grant
    /// removed), by lowercased name: `None` when the user does not exist.
    users: Mutex<HashMap<String, (Instant, Option<String>)>>,
}

/// A group's attached policies, shared.
type Policies = Arc<HashSet<PolicyArn>>;

/// `GetUser` + `ListGroupsForUser`: what proving one user alone costs, per user.
const PER_USER_CALLS: usize = 2;

impl<'a, I: Iam> Proofs<'a, I> {
    pub(super) fn new(iam: &'a Metered<I>, max_age: Duration, findings: &[&Finding]) -> Self {
        let mut demand = HashMap::new();
        for f in findings {
            for g in &f.covering_groups {
                *demand.entry(g.to_lowercase()).or_insert(0) += 1;
            }
        }
        Self {
            iam,
            max_age,
            demand,
            slots: Mutex::new(HashMap::new()),
            policies: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
        }
    }

    /// The group most findings rely on among `groups`: proving it serves the most detaches.
    pub(super) fn preferred<'g>(&self, groups: &'g [String]) -> Option<&'g String> {
        groups.iter().max_by_key(|g| {
            (
                self.demand.get(&g.to_lowercase()).copied(),
                std::cmp::Reverse(*g),
            )
        })
    }

    /// Whether `f`'s policy is granted to its user through one of the groups the scan saw
    /// granting it (a grant the scan did not see is not old enough to rely on), from proofs
    /// as fresh as `want`.
    pub(super) async fn coverage(&self, f: &Finding, want: Fresh) -> Result<Coverage, AwsError> {
        let first = self.preferred(&f.covering_groups);
        let ordered = first
            .into_iter()
            .chain(f.covering_groups.iter().filter(|g| Some(*g) != first));
        let mut alone: Option<Option<UserReads>> = None;
        let name = f.user_name.as_str().to_lowercase();
        for group in ordered {
            let slot = self.group(group, want).await?;
            // A group deleted and re-created under the same name is not the grant the scan saw
            // (its age is unknown): it proves nothing.
            let seen = f.covering_group_id(group);
            if let (Some(want), Some(now)) = (seen, slot.group_id())
                && want != now
            {
                continue;
            }
            match slot {
                Slot::Read(p) => {
                    if let Some(id) = p.members.get(&name) {
                        if f.user_id.as_ref().is_some_and(|want| want != id) {
                            return Ok(Coverage::Recreated);
                        }
                        if p.policies.contains(&f.policy_arn) {
                            return Ok(Coverage::Covered {
                                group: group.clone(),
                                read_at: p.read_at,
                            });
                        }
                    }
                }
                Slot::TooLarge(_) => {
                    if alone.is_none() {
                        alone = Some(self.user_reads(&f.user_name).await?);
                    }
                    let Some(Some(u)) = &alone else {
                        return Ok(Coverage::UserGone);
                    };
                    if f.user_id.as_ref().is_some_and(|want| *want != u.user_id) {
                        return Ok(Coverage::Recreated);
                    }
                    if u.groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                        let (read_at, policies) = self.group_policies(group, want).await?;
                        if policies.contains(&f.policy_arn) {
                            return Ok(Coverage::Covered {
                                group: group.clone(),
                                read_at: read_at.min(u.read_at),
                            });
                        }
                    }
                }
                Slot::Gone => {}
            }
        }
        // Not granted through any group it was: say why, and whether it is still the same user.
        if alone.is_none() {
            alone = Some(self.user_reads_id_only(&f.user_name, want).await?);
        }
        Ok(match alone.flatten() {
            None => Coverage::UserGone,
            Some(u) if f.user_id.as_ref().is_some_and(|want| *want != u.user_id) => {
                Coverage::Recreated
            }
            Some(_) => Coverage::NotCovered,
        })
    }

    /// Whether a read made at `at` may be relied on now.
    fn usable(&self, at: Instant, want: Fresh) -> bool {
        match want {
            Fresh::Young => at.elapsed() <= self.max_age,
            Fresh::Cached => true,
            // Strictly after: on a clock that did not move (a paused one in tests, a coarse one),
            // a read made just before `since` must not pass for one made after.
            Fresh::Since(since) => at > since,
        }
    }

    /// The group's proof: cached while usable, else read.
    async fn group(&self, group: &str, want: Fresh) -> Result<Slot, AwsError> {
        let key = group.to_lowercase();
        let slot = self
            .slots
            .lock()
            .expect("proof slots")
            .entry(key.clone())
            .or_default()
            .clone();
        let mut held = slot.lock().await;
        match &*held {
            Some(Slot::TooLarge(id)) => return Ok(Slot::TooLarge(id.clone())),
            // Read by this worker or another (while this one waited for it): either way only
            // while it is young enough now.
            Some(Slot::Read(p)) if self.usable(p.read_at, want) => {
                return Ok(Slot::Read(p.clone()));
            }
            Some(Slot::Gone) if !matches!(want, Fresh::Since(_)) => return Ok(Slot::Gone),
            _ => {}
        }
        let users = self.demand.get(&key).copied().unwrap_or(1).max(1);
        let read_at = Instant::now();
        let (group_id, members) = match self
            .iam
            .group_members(group, PER_USER_CALLS * users - 1)
            .await
        {
            Ok((id, Some(m))) => (id, m),
            Ok((id, None)) => {
                *held = Some(Slot::TooLarge(id.clone()));
                return Ok(Slot::TooLarge(id));
            }
            Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                *held = Some(Slot::Gone);
                return Ok(Slot::Gone);
            }
            Err(e) => return Err(e),
        };
        let policies = match self.iam.attached_group_policies(group).await {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::NoSuchEntity => {
                *held = Some(Slot::Gone);
                return Ok(Slot::Gone);
            }
            Err(e) => return Err(e),
        };
        let proof = Arc::new(GroupProof {
            group_id,
            members: members
                .into_iter()
                .map(|m| (m.name.as_str().to_lowercase(), m.user_id))
                .collect(),
            policies: policies.into_iter().collect(),
            read_at,
        });
        *held = Some(Slot::Read(proof.clone()));
        Ok(Slot::Read(proof))
    }

    /// A group's policies alone, for users proven one by one.
    async fn group_policies(
        &self,
        group: &str,
        want: Fresh,
    ) -> Result<(Instant, Policies), AwsError> {
        let key = group.to_lowercase();
        if let Some((at, p)) = self.policies.lock().expect("policies").get(&key)
            && self.usable(*at, want)
        {
            return Ok((*at, p.clone()));
        }
        let at = Instant::now();
        let list = match self.iam.attached_group_policies(group).await {
            Ok(l) => l,
            Err(e) if e.kind == ErrorKind::NoSuchEntity => Vec::new(),
            Err(e) => return Err(e),
        };
        let p = Arc::new(list.into_iter().collect::<HashSet<_>>());
        self.policies
            .lock()
            .expect("policies")
            .insert(key, (at, p.clone()));
        Ok((at, p))
    }

    /// The user's id and groups, or `None` if the user does not exist.
    async fn user_reads(&self, user: &UserName) -> Result<Option<UserReads>, AwsError> {
        let read_at = Instant::now();
        let user_id = match self.iam.user_id(user).await {
            Ok(id) => id,
            Err(e) if e.kind == ErrorKind::NoSuchEntity => return Ok(None),
            Err(e) => return Err(e),
        };
        let groups = match self.iam.groups_for_user(user).await {
            Ok(g) => g,
            Err(e) if e.kind == ErrorKind::NoSuchEntity => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(UserReads {
            user_id,
            groups,
            read_at,
        }))
    }

    /// The user's id alone (`GetUser`, once per user while usable), or `None` if the user does
    /// not exist.
    async fn user_reads_id_only(
        &self,
        user: &UserName,
        want: Fresh,
    ) -> Result<Option<UserReads>, AwsError> {
        let key = user.as_str().to_lowercase();
        let known = self.users.lock().expect("users").get(&key).cloned();
        let (read_at, id) = match known {
            Some((at, id)) if self.usable(at, want) => (at, id),
            _ => {
                let at = Instant::now();
                let id = match self.iam.user_id(user).await {
                    Ok(id) => Some(id),
                    Err(e) if e.kind == ErrorKind::NoSuchEntity => None,
                    Err(e) => return Err(e),
                };
                self.users
                    .lock()
                    .expect("users")
                    .insert(key, (at, id.clone()));
                (at, id)
            }
        };
        Ok(id.map(|user_id| UserReads {
            user_id,
            groups: Vec::new(),
            read_at,
        }))
    }
}
