//! `insitu k8s render`: the datalab manifests as Kubernetes objects (YAML).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use insitu_launcher::k8s::{self, Target};

use crate::cli::K8sRenderArgs;

pub fn render(args: &K8sRenderArgs) -> anyhow::Result<()> {
    let mut volumes: Vec<(String, PathBuf)> = Vec::new();
    crate::serve_config::add_volume_flags(&mut volumes, &args.volumes)?;
    let names: Vec<String> = volumes.iter().map(|(n, _)| n.clone()).collect();
    let (mut manifests, problems) = insitu_launcher::manifest::load_folder(&args.datalabs, &names);
    for p in &problems {
        eprintln!("problem  {p}");
    }
    match &args.datalab {
        // Problems in the other manifests are only reported: this one is all that is asked for.
        Some(name) => {
            manifests.retain(|m| &m.name == name);
            if manifests.is_empty() {
                bail!(
                    "no datalab named {name:?} loads from {}{}",
                    args.datalabs.display(),
                    if problems.is_empty() {
                        ""
                    } else {
                        " (see the problems above)"
                    }
                );
            }
        }
        None if !problems.is_empty() => bail!(
            "{} of {} manifest(s) in {} have problems; nothing rendered",
            problems.len(),
            manifests.len() + problems.len(),
            args.datalabs.display()
        ),
        None if manifests.is_empty() => {
            bail!(
                "no datalab manifest (*.toml) in {}",
                args.datalabs.display()
            )
        }
        None => {}
    }

    let target = Target {
        user: args.user.clone(),
        teams: args.teams.clone(),
        namespace: args.namespace.clone(),
        volumes,
        nfs_server: args.nfs_server.clone(),
        workspace_size: args.workspace_size.clone(),
        team_workspace_size: args.team_workspace_size.clone(),
        storage_class: args.storage_class.clone(),
    };
    let objects =
        k8s::render(&manifests, &target).with_context(|| format!("{}", args.datalabs.display()))?;
    let yaml = format!(
        "# insitu k8s render: user {:?}, namespace {:?}. The Secrets hold fresh instance \
         tokens: apply this, do not commit it.\n{}",
        target.user,
        target.namespace,
        k8s::to_yaml(&objects)
    );
    match &args.output {
        Some(path) => write_private(path, yaml.as_bytes()),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

/// Under a temporary name created 0600 (it holds tokens), renamed once complete.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".tmp-{}", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let write = || -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}
