//! insitu-launcher: datalabs (JupyterLab, TOPCAT, DS9 …) started per user next to the data.
//!
//! A folder of TOML manifests ([`manifest`]) says what each datalab runs and needs. Users and
//! their teams come with bearer tokens from a users file ([`users`]). `POST
//! /datalabs/{name}/launch` starts an instance on this machine ([`process_backend`]): under
//! resource limits (cgroups v2 where the machine has them, else rlimits and CPU affinity), in
//! a private mount namespace where the data volumes are read-only and only the user's own and
//! team workspaces ([`workspaces`]) are visible ([`sandbox`]), under quotas ([`config`]).
//! Instances are persisted and re-adopted on restart, and culled when idle ([`instances`]);
//! `/user/{user}/{instance}/…` reaches them through a reverse proxy for HTTP and WebSocket
//! ([`proxy`]). [`api`] has the routes, [`page`] the web page; [`k8s`] renders the same
//! manifests as Kubernetes objects. It does not build images or run containers: on one
//! machine a datalab is a process, on Kubernetes a Pod.
//!
//! Main entry points: [`Launcher::open`] and [`api::routes`].

pub mod api;
pub mod config;
pub mod instances;
pub mod k8s;
pub mod manifest;
pub mod page;
pub mod process_backend;
pub mod proxy;
pub mod sandbox;
pub mod users;
pub mod workspaces;

use std::path::PathBuf;

pub use config::{LauncherConfig, LauncherFile, Quotas};
pub use instances::Launcher;
pub use manifest::{Manifest, ManifestProblem};

/// The cookie a browser holds its bearer token in, after `/login`.
pub const COOKIE: &str = "insitu_token";

/// What can go wrong, split by whose fault it is (see [`api`] for the HTTP status of each).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Unauthorized(String),
    /// Also what a user gets for another user's instance or workspace: it does not exist for
    /// them.
    #[error("{0}")]
    NotFound(String),
    #[error("quota: {0}")]
    Quota(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// The instance is not up (starting, stopping, failed, not answering).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Config(String),
    #[error("users file {file}: {message}")]
    Users { file: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}
