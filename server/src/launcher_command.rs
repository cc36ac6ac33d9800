//! `insitu launcher add-user` (a user and a new token in the users file) and `insitu launcher
//! check` (every problem of a folder of datalab manifests).

use anyhow::{bail, Context};
use insitu_launcher::users::UsersFile;

use crate::cli::{AddUserArgs, CheckArgs};

pub fn add_user(args: &AddUserArgs) -> anyhow::Result<()> {
    let mut file = match std::fs::read_to_string(&args.users) {
        Ok(text) => UsersFile::parse(&text, &args.users)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => UsersFile::default(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.users.display())),
    };
    let token = file
        .add(&args.name, &args.teams, args.uid, args.gid)
        .map_err(anyhow::Error::msg)?;
    let text = file.render().context("cannot write the users file")?;
    // Written beside it, then renamed: a crash never leaves half a users file.
    let tmp = args.users.with_extension("toml.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
    }
    std::fs::rename(&tmp, &args.users)
        .with_context(|| format!("cannot replace {}", args.users.display()))?;
    eprintln!(
        "{} in {} (teams: {}); its token, shown once:",
        args.name,
        args.users.display(),
        if args.teams.is_empty() {
            "none".to_string()
        } else {
            args.teams.join(", ")
        }
    );
    println!("{token}");
    Ok(())
}

pub fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let mut volumes = Vec::new();
    crate::serve_config::add_volume_flags(&mut volumes, &args.volumes)?;
    let names: Vec<String> = volumes.into_iter().map(|(n, _)| n).collect();
    let (manifests, problems) = insitu_launcher::manifest::load_folder(&args.datalabs, &names);
    for m in &manifests {
        println!("ok       {} ({})", m.name, m.title);
    }
    for p in &problems {
        eprintln!("problem  {p}");
    }
    if !problems.is_empty() {
        bail!(
            "{} of {} manifest(s) have problems",
            problems.len(),
            manifests.len() + problems.len()
        );
    }
    if manifests.is_empty() {
        bail!(
            "no datalab manifest (*.toml) in {}",
            args.datalabs.display()
        );
    }
    Ok(())
}
