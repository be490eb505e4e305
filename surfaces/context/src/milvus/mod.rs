//! The Milvus control plane: per-agent index cut-off with Milvus' own RBAC.
//!
//! `context.revoke_index` revokes the agent role's privileges on one collection
//! (`OperatePrivilege`, type Revoke, object `Collection`); its inverse grants exactly those back.
//! Both are read back with `SelectGrant`. Milvus 2.3 cannot hide one source, so
//! `context.quarantine_source` is planned as rejected with that reason.
//!
//! One gRPC channel, built with the plane, carries every call; each call makes one attempt and
//! answers with a typed error.

mod config;
mod grpc;
pub mod observation;
pub mod rungs;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use firebreak_containment::plane::{
    Change, Check, KindSpec, Observation, Outcome, PlanInput, Plane, PlaneError, Route,
    Verification,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

pub use config::{Credentials, MilvusCollection, MilvusContextConfig, PasswordSource};
pub use observation::{CollectionRef, Grant, MilvusState};
pub use rungs::{MilvusSpec, Revocation};

use crate::kinds::{KINDS, QUARANTINE_INDEX, QUARANTINE_SOURCE, REVOKE_INDEX};
use crate::shared::breached;
use crate::ContextError;
use config::{ADMIN_ROLE, PUBLIC_ROLE};
use grpc::MilvusClient;

/// Names this control plane in errors and plans.
pub const PLANE: &str = "milvus context store";

pub struct Milvus {
    config: MilvusContextConfig,
    channel: Channel,
    authorization: MetadataValue<Ascii>,
}

impl Milvus {
    /// Validates the config, reads the password and builds the channel, which connects on
    /// first use. Async because the channel's worker runs on the caller's tokio runtime.
    pub async fn new(config: MilvusContextConfig) -> Result<Milvus, ContextError> {
        config.validate()?;
        let authorization = grpc::authorization(&config.credentials()?)?;
        let channel = grpc::channel(&config.address)?;
        Ok(Milvus {
            config,
            channel,
            authorization,
        })
    }

    pub fn config(&self) -> &MilvusContextConfig {
        &self.config
    }

    /// Calls to `database`, over a clone of the one channel.
    fn client(&self, database: &str) -> MilvusClient {
        MilvusClient::new(self.channel.clone(), self.authorization.clone(), database)
    }

    async fn observe_state(&self, input: &PlanInput<'_>) -> Result<MilvusState, ContextError> {
        let (index, _) = breached(input).ok_or_else(|| {
            ContextError::Plane(PlaneError::Invalid {
                plane: PLANE,
                detail: "the alert's parameter is not a context parameter {index, source}; send it with dimension context".into(),
            })
        })?;
        let entry = self.config.collection_for_index(index).ok_or_else(|| {
            ContextError::MilvusUnknownIndex {
                index: index.to_string(),
                known: self
                    .config
                    .collections
                    .iter()
                    .map(|c| c.index_name().to_string())
                    .collect(),
            }
        })?;
        let agent = input.alert.agent.key().to_string();
        let role = self
            .config
            .roles
            .get(&agent)
            .ok_or_else(|| ContextError::MilvusUnknownAgent(agent.clone()))?;
        let database = &self.config.database;
        let mut client = self.client(database);
        if !client.has_collection(&entry.collection).await? {
            return Err(ContextError::UnknownCollection {
                collection: entry.collection.clone(),
                database: database.clone(),
            });
        }
        let existing = client.roles().await?;
        if !existing.contains(role) {
            return Err(ContextError::MilvusUnknownRole {
                role: role.clone(),
                field: format!("roles.{agent}"),
            });
        }
        let agent_grants = client.grants(role, None).await?;
        let public_grants = client.grants(PUBLIC_ROLE, None).await?;
        // The agent connects as a user, which may hold roles beside its configured one.
        let users = client.users_of(role).await?;
        let mut siblings = BTreeSet::new();
        let mut admin_users = BTreeSet::new();
        for user in &users {
            for held in client.roles_of(user).await? {
                if held == ADMIN_ROLE {
                    admin_users.insert(user.clone());
                } else if held != *role && held != PUBLIC_ROLE {
                    siblings.insert(held);
                }
            }
        }
        let mut sibling_grants = BTreeSet::new();
        for sibling in &siblings {
            sibling_grants.extend(client.grants(sibling, None).await?);
        }
        let mut others = BTreeMap::new();
        let mut sharing = Vec::new();
        for (other_agent, other_role) in &self.config.roles {
            if other_agent == &agent {
                continue;
            }
            if other_role == role {
                sharing.push(other_agent.clone());
            } else if existing.contains(other_role) && !others.contains_key(other_role) {
                let grants = client.grants(other_role, Some(&entry.collection)).await?;
                others.insert(other_role.clone(), (other_agent.clone(), grants));
            }
        }
        Ok(MilvusState {
            collection: CollectionRef {
                index: entry.index_name().to_string(),
                database: database.clone(),
                collection: entry.collection.clone(),
            },
            agent_role: role.clone(),
            agent_grants,
            public_grants,
            users,
            sibling_grants,
            admin_users,
            others,
            sharing,
        })
    }
}

#[async_trait]
impl Plane for Milvus {
    const KEY: &'static str = "context.milvus";
    const ROUTE: Route = Route::Context;
    const KINDS: &'static [&'static KindSpec] = KINDS;
    type Spec = MilvusSpec;

    fn kind_of(spec: &MilvusSpec) -> &'static KindSpec {
        match spec {
            MilvusSpec::QuarantineSource(_) => &QUARANTINE_SOURCE,
            MilvusSpec::RevokeIndex(_) => &REVOKE_INDEX,
            MilvusSpec::QuarantineIndex(_) => &QUARANTINE_INDEX,
        }
    }

    /// The index is one of this server's collections, and the agent has a Milvus role here:
    /// with pgvector configured too, each index reaches only the plane that holds it.
    fn handles(&self, input: &PlanInput<'_>) -> bool {
        breached(input).is_some_and(|(index, _)| self.config.collection_for_index(index).is_some())
            && self.config.roles.contains_key(&input.alert.agent.key().0)
    }

    async fn observe(
        &self,
        input: &PlanInput<'_>,
    ) -> Result<Box<dyn Observation<MilvusSpec>>, PlaneError> {
        Ok(Box::new(self.observe_state(input).await?))
    }

    async fn change(&self, spec: &MilvusSpec, change: Change) -> Result<Outcome, PlaneError> {
        match spec {
            MilvusSpec::QuarantineSource(s) => Err(rungs::quarantine_source::unsupported(s)),
            MilvusSpec::RevokeIndex(r) | MilvusSpec::QuarantineIndex(r) => {
                let mut client = self.client(&r.collection.database);
                Ok(r.change(&mut client, change).await?)
            }
        }
    }

    async fn check(&self, spec: &MilvusSpec, check: Check) -> Result<Verification, PlaneError> {
        match spec {
            MilvusSpec::QuarantineSource(s) => Err(rungs::quarantine_source::unsupported(s)),
            MilvusSpec::RevokeIndex(r) | MilvusSpec::QuarantineIndex(r) => {
                let mut client = self.client(&r.collection.database);
                Ok(r.check(&mut client, check).await?)
            }
        }
    }

    fn verify_deadline(&self) -> Duration {
        self.config.verify_deadline
    }
}
