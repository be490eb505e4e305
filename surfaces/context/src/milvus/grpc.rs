//! The slice of Milvus 2.3's gRPC API (`milvus.proto.milvus.MilvusService`) Firebreak uses.
//!
//! Written by hand because Milvus has no official Rust SDK for 2.3 and generating all of
//! milvus.proto would need protoc (and its build script) on every machine for five calls. Field
//! numbers are those of milvus-proto v2.3 `milvus.proto` / `common.proto`, checked against the
//! descriptors pymilvus 2.3.8 compiles in; fields Firebreak never sets or reads (`base`,
//! `time_stamp`, …) are left out, which protobuf allows in both directions.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use super::config::Credentials;
use super::observation::Grant;
use crate::ContextError;

/// The object type of collection-level privileges.
pub const COLLECTION: &str = "Collection";

/// `common.Status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// `common.ErrorCode`, the legacy code (0 = Success).
    #[prost(int32, tag = "1")]
    pub error_code: i32,
    #[prost(string, tag = "2")]
    pub reason: String,
    /// The 2.3 `merr` code (0 = success).
    #[prost(int32, tag = "3")]
    pub code: i32,
}

/// `RoleEntity`, `ObjectEntity`, `UserEntity` and `PrivilegeEntity`: each is `{string name = 1}`,
/// so one type encodes all four.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Named {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `GrantorEntity`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantorEntity {
    #[prost(message, optional, tag = "1")]
    pub user: Option<Named>,
    #[prost(message, optional, tag = "2")]
    pub privilege: Option<Named>,
}

/// `GrantEntity`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GrantEntity {
    #[prost(message, optional, tag = "1")]
    pub role: Option<Named>,
    #[prost(message, optional, tag = "2")]
    pub object: Option<Named>,
    #[prost(string, tag = "3")]
    pub object_name: String,
    #[prost(message, optional, tag = "4")]
    pub grantor: Option<GrantorEntity>,
    #[prost(string, tag = "5")]
    pub db_name: String,
}

/// `OperatePrivilegeType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum OperatePrivilegeType {
    Grant = 0,
    Revoke = 1,
}

/// `OperatePrivilegeRequest` (returns `common.Status`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatePrivilegeRequest {
    #[prost(message, optional, tag = "2")]
    pub entity: Option<GrantEntity>,
    #[prost(enumeration = "OperatePrivilegeType", tag = "3")]
    pub r#type: i32,
}

/// `SelectGrantRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectGrantRequest {
    #[prost(message, optional, tag = "2")]
    pub entity: Option<GrantEntity>,
}

/// `SelectGrantResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectGrantResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub entities: Vec<GrantEntity>,
}

/// `SelectRoleRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectRoleRequest {
    #[prost(message, optional, tag = "2")]
    pub role: Option<Named>,
    #[prost(bool, tag = "3")]
    pub include_user_info: bool,
}

/// `RoleResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RoleResult {
    #[prost(message, optional, tag = "1")]
    pub role: Option<Named>,
    #[prost(message, repeated, tag = "2")]
    pub users: Vec<Named>,
}

/// `SelectRoleResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectRoleResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<RoleResult>,
}

/// `SelectUserRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectUserRequest {
    #[prost(message, optional, tag = "2")]
    pub user: Option<Named>,
    #[prost(bool, tag = "3")]
    pub include_role_info: bool,
}

/// `UserResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UserResult {
    #[prost(message, optional, tag = "1")]
    pub user: Option<Named>,
    #[prost(message, repeated, tag = "2")]
    pub roles: Vec<Named>,
}

/// `SelectUserResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectUserResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(message, repeated, tag = "2")]
    pub results: Vec<UserResult>,
}

/// `HasCollectionRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HasCollectionRequest {
    #[prost(string, tag = "2")]
    pub db_name: String,
    #[prost(string, tag = "3")]
    pub collection_name: String,
}

/// `BoolResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bool, tag = "2")]
    pub value: bool,
}

const SERVICE: &str = "/milvus.proto.milvus.MilvusService/";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The channel to a Milvus proxy, built once per plane: it connects on first use, reconnects
/// after a failure, and every call clones it (a clone shares the connection).
pub fn channel(address: &str) -> Result<Channel, ContextError> {
    let endpoint = Endpoint::from_shared(format!("http://{address}"))
        .map_err(|e| ContextError::MilvusConfig {
            field: "address".into(),
            reason: format!("{address:?} is not a host:port: {e}"),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    Ok(endpoint.connect_lazy())
}

/// Milvus' own scheme: the metadata value is base64("user:password"), no "Basic " prefix.
pub fn authorization(credentials: &Credentials) -> Result<MetadataValue<Ascii>, ContextError> {
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.user, credentials.password));
    token.parse().map_err(|_| ContextError::MilvusConfig {
        field: "user".into(),
        reason: "the credentials do not fit a gRPC header".into(),
    })
}

/// Firebreak's authenticated calls to one database, over a clone of the plane's channel.
pub struct MilvusClient {
    grpc: tonic::client::Grpc<Channel>,
    authorization: MetadataValue<Ascii>,
    database: String,
}

impl MilvusClient {
    pub fn new(
        channel: Channel,
        authorization: MetadataValue<Ascii>,
        database: &str,
    ) -> MilvusClient {
        MilvusClient {
            grpc: tonic::client::Grpc::new(channel),
            authorization,
            database: database.to_string(),
        }
    }

    async fn call<Req, Resp>(
        &mut self,
        method: &'static str,
        doing: &str,
        message: Req,
    ) -> Result<Resp, ContextError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| ContextError::MilvusUnreachable(e.to_string()))?;
        let path = PathAndQuery::try_from(format!("{SERVICE}{method}")).map_err(|e| {
            ContextError::Milvus {
                doing: doing.to_string(),
                detail: format!("bad method path {method}: {e}"),
            }
        })?;
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        match self.grpc.unary(request, path, codec).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(status_error(doing, &status)),
        }
    }

    /// The grants of `role` in the configured database, on one collection or on everything.
    pub async fn grants(
        &mut self,
        role: &str,
        collection: Option<&str>,
    ) -> Result<BTreeSet<Grant>, ContextError> {
        let entity = GrantEntity {
            role: Some(Named { name: role.into() }),
            object: collection.map(|_| Named {
                name: COLLECTION.into(),
            }),
            object_name: collection.unwrap_or_default().into(),
            grantor: None,
            db_name: self.database.clone(),
        };
        let doing = format!("reading the grants of role {role} (SelectGrant)");
        let response: SelectGrantResponse = self
            .call(
                "SelectGrant",
                &doing,
                SelectGrantRequest {
                    entity: Some(entity),
                },
            )
            .await?;
        check(&doing, response.status.as_ref())?;
        Ok(response
            .entities
            .into_iter()
            .map(|e| Grant {
                role: e.role.map(|r| r.name).unwrap_or_else(|| role.to_string()),
                object: e.object.map(|o| o.name).unwrap_or_default(),
                object_name: e.object_name,
                privilege: e
                    .grantor
                    .and_then(|g| g.privilege)
                    .map(|p| p.name)
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Every role defined in Milvus.
    pub async fn roles(&mut self) -> Result<BTreeSet<String>, ContextError> {
        Ok(self.select_roles(None).await?.into_keys().collect())
    }

    /// The users holding `role`.
    pub async fn users_of(&mut self, role: &str) -> Result<BTreeSet<String>, ContextError> {
        Ok(self
            .select_roles(Some(role))
            .await?
            .into_values()
            .flatten()
            .collect())
    }

    /// Role → its users, for one role or all of them.
    async fn select_roles(
        &mut self,
        role: Option<&str>,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, ContextError> {
        let doing = "reading the roles (SelectRole)";
        let response: SelectRoleResponse = self
            .call(
                "SelectRole",
                doing,
                SelectRoleRequest {
                    role: role.map(|r| Named { name: r.into() }),
                    include_user_info: role.is_some(),
                },
            )
            .await?;
        check(doing, response.status.as_ref())?;
        Ok(response
            .results
            .into_iter()
            .filter_map(|r| {
                let users = r.users.into_iter().map(|u| u.name).collect();
                r.role.map(|role| (role.name, users))
            })
            .collect())
    }

    /// The roles `user` holds.
    pub async fn roles_of(&mut self, user: &str) -> Result<BTreeSet<String>, ContextError> {
        let doing = format!("reading the roles of user {user} (SelectUser)");
        let response: SelectUserResponse = self
            .call(
                "SelectUser",
                &doing,
                SelectUserRequest {
                    user: Some(Named { name: user.into() }),
                    include_role_info: true,
                },
            )
            .await?;
        check(&doing, response.status.as_ref())?;
        Ok(response
            .results
            .into_iter()
            .flat_map(|u| u.roles)
            .map(|r| r.name)
            .collect())
    }

    pub async fn has_collection(&mut self, collection: &str) -> Result<bool, ContextError> {
        let doing = format!("looking collection {collection} up (HasCollection)");
        let response: BoolResponse = self
            .call(
                "HasCollection",
                &doing,
                HasCollectionRequest {
                    db_name: self.database.clone(),
                    collection_name: collection.into(),
                },
            )
            .await?;
        check(&doing, response.status.as_ref())?;
        Ok(response.value)
    }

    /// Grants or revokes one privilege of `role` on one collection.
    pub async fn operate(
        &mut self,
        op: OperatePrivilegeType,
        role: &str,
        collection: &str,
        privilege: &str,
    ) -> Result<(), ContextError> {
        let doing = format!(
            "{} {privilege} on collection {collection} {} role {role} (OperatePrivilege)",
            match op {
                OperatePrivilegeType::Grant => "granting",
                OperatePrivilegeType::Revoke => "revoking",
            },
            match op {
                OperatePrivilegeType::Grant => "to",
                OperatePrivilegeType::Revoke => "from",
            },
        );
        let entity = GrantEntity {
            role: Some(Named { name: role.into() }),
            object: Some(Named {
                name: COLLECTION.into(),
            }),
            object_name: collection.into(),
            // The proxy fills in the grantor user from the caller's credentials.
            grantor: Some(GrantorEntity {
                user: None,
                privilege: Some(Named {
                    name: privilege.into(),
                }),
            }),
            db_name: self.database.clone(),
        };
        let status: Status = self
            .call(
                "OperatePrivilege",
                &doing,
                OperatePrivilegeRequest {
                    entity: Some(entity),
                    r#type: op as i32,
                },
            )
            .await?;
        check(&doing, Some(&status))
    }
}

/// Milvus 2.3 error codes (`merr`) a later attempt can succeed past: not ready yet, unavailable,
/// request or rate limit exceeded, resources short for now.
const TRANSIENT_CODES: &[i32] = &[1, 2, 4, 8, 12];

fn check(doing: &str, status: Option<&Status>) -> Result<(), ContextError> {
    match status {
        Some(s) if s.error_code != 0 || s.code != 0 => {
            let detail = format!(
                "{} (error code {}, code {})",
                s.reason, s.error_code, s.code
            );
            let doing = doing.to_string();
            Err(if TRANSIENT_CODES.contains(&s.code) {
                ContextError::MilvusBusy { doing, detail }
            } else {
                ContextError::Milvus { doing, detail }
            })
        }
        _ => Ok(()),
    }
}

fn status_error(doing: &str, status: &tonic::Status) -> ContextError {
    let message = status.message();
    match status.code() {
        // No connection, or no answer in time.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
            ContextError::MilvusUnreachable(format!("{doing}: {message}"))
        }
        Code::ResourceExhausted | Code::Aborted | Code::Internal => ContextError::MilvusBusy {
            doing: doing.to_string(),
            detail: format!("{message} (gRPC {:?})", status.code()),
        },
        Code::Unauthenticated => ContextError::Milvus {
            doing: doing.to_string(),
            detail: format!("{message}; check context.milvus.user and the password it reads"),
        },
        Code::PermissionDenied => ContextError::Milvus {
            doing: doing.to_string(),
            detail: format!(
                "{message}; Firebreak's Milvus user must be root or hold the admin role"
            ),
        },
        code => ContextError::Milvus {
            doing: doing.to_string(),
            detail: format!("{message} (gRPC {code:?})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn a_revoke_request_encodes_with_milvus_field_numbers() {
        let request = OperatePrivilegeRequest {
            entity: Some(GrantEntity {
                role: Some(Named { name: "r".into() }),
                object: Some(Named {
                    name: "Collection".into(),
                }),
                object_name: "kb".into(),
                grantor: Some(GrantorEntity {
                    user: None,
                    privilege: Some(Named {
                        name: "Search".into(),
                    }),
                }),
                db_name: "default".into(),
            }),
            r#type: OperatePrivilegeType::Revoke as i32,
        };
        // entity = field 2 (length-delimited), type = field 3 (varint 1).
        let bytes = request.encode_to_vec();
        assert_eq!(bytes[0], 2 << 3 | 2);
        assert_eq!(&bytes[bytes.len() - 2..], &[3 << 3, 1]);
        let entity = GrantEntity::decode(&bytes[2..bytes.len() - 2]).expect("entity");
        assert_eq!(entity.object_name, "kb");
        assert_eq!(entity.db_name, "default");
    }

    #[test]
    fn milvus_faults_read_as_the_engine_expects() {
        use firebreak_containment::plane::PlaneError;
        let plane = |e: ContextError| PlaneError::from(e);
        let status = |code| Status {
            error_code: 65535,
            reason: "no".into(),
            code,
        };
        let rate_limited = check("searching", Some(&status(8))).expect_err("a failure");
        assert!(
            matches!(plane(rate_limited), PlaneError::Unavailable { .. }),
            "rate limit: retried"
        );
        let denied = check("searching", Some(&status(1401))).expect_err("a failure");
        assert!(matches!(plane(denied), PlaneError::Refused { .. }));
        let ok = Status {
            error_code: 0,
            reason: String::new(),
            code: 0,
        };
        assert!(check("searching", Some(&ok)).is_ok());
        for (status, transient) in [
            (
                tonic::Status::unavailable("connection refused"),
                "unreachable",
            ),
            (tonic::Status::deadline_exceeded("slow"), "unreachable"),
            (tonic::Status::resource_exhausted("busy"), "unavailable"),
            (tonic::Status::permission_denied("no"), "refused"),
            (tonic::Status::unauthenticated("who"), "refused"),
        ] {
            let read = match plane(status_error("searching", &status)) {
                PlaneError::Unreachable { .. } => "unreachable",
                PlaneError::Unavailable { .. } => "unavailable",
                PlaneError::Refused { .. } => "refused",
                _ => "other",
            };
            assert_eq!(read, transient, "{status:?}");
        }
    }
}
