//! Where the hub's packets come from now: this daemon alone, or its role in a cluster. The
//! cluster (`crate::input::cluster`) sets it, `/health` reads it; the names are written here
//! once, for `/health`, `/metrics` and the logs.

use serde::{Serialize, Serializer};

/// Where the snapshots come from, as `/health` says in `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No cluster: this daemon polls the engine alone.
    Single,
    /// This daemon's role in its cluster.
    Cluster(Role),
}

impl Mode {
    /// The name in `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Cluster(role) => role.name(),
        }
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What this daemon does in its cluster now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started, not yet heard from Redis: it waits (a moment) rather than poll with the others.
    Joining,
    /// Holds the lease: polls the engine and publishes for everyone.
    Leader,
    /// Another holds the lease: fans out what it publishes.
    Follower,
    /// Redis cannot be reached: polls the engine itself, under a local epoch.
    Fallback,
    /// The cluster's poller polls another engine: this daemon follows none of it and polls
    /// its own engine itself, under a local epoch.
    Apart,
}

impl Role {
    /// Every role, in the order `bff_cluster_role{role}` is first written.
    pub const ALL: [Role; 5] = [
        Role::Joining,
        Role::Leader,
        Role::Follower,
        Role::Fallback,
        Role::Apart,
    ];

    /// The name in `/health`, `/metrics` and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::Joining => "joining",
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Fallback => "fallback",
            Role::Apart => "apart",
        }
    }

    /// Whether this daemon polls the engine.
    pub fn polls(self) -> bool {
        matches!(self, Role::Leader | Role::Fallback | Role::Apart)
    }

    /// Whether this daemon polls for itself alone (its clients get its own epoch).
    pub fn alone(self) -> bool {
        matches!(self, Role::Fallback | Role::Apart)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_is_listed_once_in_all() {
        for role in Role::ALL {
            // Fails to compile when a role is added: then add it to `ALL` too.
            let at = match role {
                Role::Joining => 0,
                Role::Leader => 1,
                Role::Follower => 2,
                Role::Fallback => 3,
                Role::Apart => 4,
            };
            assert_eq!(Role::ALL[at], role);
        }
    }

    #[test]
    fn a_mode_is_written_as_its_name() {
        let names: Vec<String> = [Mode::Single]
            .into_iter()
            .chain(Role::ALL.map(Mode::Cluster))
            .map(|mode| serde_json::to_string(&mode).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "\"single\"",
                "\"joining\"",
                "\"leader\"",
                "\"follower\"",
                "\"fallback\"",
                "\"apart\""
            ]
        );
    }
}
