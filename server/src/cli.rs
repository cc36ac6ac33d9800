//! Command-line arguments (clap derive) and dispatch to the commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// insitu: FITS cutouts (and soon ADQL queries and ML tensors) straight from archives in place.
#[derive(Debug, Parser)]
#[command(name = "insitu", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Cut one image around a sky or pixel position, or around every row of a catalogue.
    Cutout(Box<CutoutArgs>),
    /// Generate a Euclid-MER-like demo mosaic and catalogue, then cut it in bulk.
    Demo(DemoArgs),
    /// A stretched PNG or JPEG quick look of one image, or an RGB composite of three.
    Preview(PreviewArgs),
    /// Run one ADQL query over FITS binary tables, Parquet or CSV files read in place.
    Query(QueryArgs),
    /// Serve the tables (and volumes) over HTTP: IVOA TAP 1.1 at /tap, metrics at /metrics.
    /// With no table and no volume, serves the demo tables.
    Serve(ServeArgs),
    /// The datalab launcher's administration: users and their tokens, manifest checks.
    #[command(subcommand)]
    Launcher(LauncherCommand),
    /// Kubernetes: the datalab manifests as Pod/Service/PVC objects.
    #[command(subcommand)]
    K8s(K8sCommand),
}

#[derive(Debug, Subcommand)]
pub enum LauncherCommand {
    /// Add a user (or give an existing one a new token) to a users file, in the given teams;
    /// prints the new bearer token once (the file keeps only its SHA-256).
    AddUser(AddUserArgs),
    /// Load a folder of datalab manifests and report every problem (exit 1 if any).
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct AddUserArgs {
    /// The user's name: letters, digits, '-', '_' or '.'.
    pub name: String,
    /// The users file (TOML), created if missing.
    #[arg(long, value_name = "FILE")]
    pub users: PathBuf,
    /// A team the user belongs to (shares the team's workspace); repeatable.
    #[arg(long = "team", value_name = "TEAM")]
    pub teams: Vec<String>,
    /// Run the user's datalabs as this uid (and gid) when the launcher runs as root.
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub gid: Option<u32>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The folder of datalab manifests (*.toml).
    pub datalabs: PathBuf,
    /// A volume the server serves, as NAME=PATH (manifests may only mount those); repeatable.
    #[arg(long = "volume", value_name = "NAME=PATH")]
    pub volumes: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum K8sCommand {
    /// Print (or write) the Kubernetes objects of the datalab manifests for one user.
    Render(K8sRenderArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// A table to serve, as SCHEMA.TABLE=PATH (FITS binary table, .parquet or .csv); repeatable.
    #[arg(long = "table", value_name = "SCHEMA.TABLE=PATH")]
    pub tables: Vec<String>,
    /// A read-only data volume, as NAME=PATH; repeatable.
    #[arg(long = "volume", value_name = "NAME=PATH")]
    pub volumes: Vec<String>,
    /// A TOML file with the same settings (tables, volumes, listen, limits; see
    /// `serve_config.rs`); flags given here win.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Spatial indexes and demo data. Default: $INSITU_CACHE_DIR, else
    /// $XDG_CACHE_HOME/insitu, else ~/.cache/insitu.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Async jobs and their results, kept across restarts. Default: $INSITU_STATE_DIR, else
    /// $XDG_STATE_HOME/insitu, else ~/.local/state/insitu.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The URL clients reach the service at, when behind a proxy (default: from each
    /// request's Host header).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Async jobs run at the same time.
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// `insitu k8s render` (see `k8s_command.rs`).
#[derive(Debug, Args)]
pub struct K8sRenderArgs {
    /// The folder of datalab manifests (*.toml).
    #[arg(long, value_name = "DIR")]
    pub datalabs: PathBuf,
    /// The user whose Pods, Services and workspace claims to render.
    #[arg(long)]
    pub user: String,
    /// A team of the user (a shared workspace claim); repeatable.
    #[arg(long = "team", value_name = "TEAM")]
    pub teams: Vec<String>,
    /// A data volume as NAME=PATH, mounted read-only over NFS from --nfs-server; repeatable.
    #[arg(long = "volume", value_name = "NAME=PATH")]
    pub volumes: Vec<String>,
    /// The NFS server exporting the volumes' paths.
    #[arg(long, value_name = "HOST")]
    pub nfs_server: Option<String>,
    /// The namespace of every object.
    #[arg(long, default_value = "insitu")]
    pub namespace: String,
    /// Only this datalab (default: every manifest that loads).
    #[arg(long, value_name = "NAME")]
    pub datalab: Option<String>,
    /// The size of the user's workspace claim (the per-user quota), a Kubernetes quantity.
    #[arg(long, default_value = "100Gi", value_name = "QUANTITY")]
    pub workspace_size: String,
    /// The size of each team workspace claim.
    #[arg(long, default_value = "100Gi", value_name = "QUANTITY")]
    pub team_workspace_size: String,
    /// The storage class of the workspace claims (ReadWriteMany); default: the cluster's.
    #[arg(long, value_name = "CLASS")]
    pub storage_class: Option<String>,
    /// Write to this file instead of standard output (it holds Secrets: created mode 0600).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The ADQL query.
    pub adql: String,
    /// A table to query, as SCHEMA.TABLE=PATH (FITS binary table, .parquet or .csv); repeatable.
    #[arg(long = "table", value_name = "SCHEMA.TABLE=PATH")]
    pub tables: Vec<String>,
    /// Output: CSV with a header line, a VOTable 1.4 document (TABLEDATA, or BINARY2 with
    /// votable-binary2), Parquet or a FITS binary table (both need -o), or an aligned text table.
    #[arg(long, default_value = "csv", value_parser = ["csv", "votable", "votable-binary2", "parquet", "fits", "table"])]
    pub format: String,
    /// Write the result to this file instead of standard output (written under a temporary
    /// name, renamed once complete).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Only check that the text is valid ADQL 2.1 (tables and columns are not resolved):
    /// exit 0 if it is, 1 with the parser's message if not.
    #[arg(long, conflicts_with_all = ["tables", "output"])]
    pub parse_only: bool,
    /// Where spatial indexes of the tables are kept between runs (never beside the data).
    /// Default: $INSITU_CACHE_DIR, else $XDG_CACHE_HOME/insitu, else ~/.cache/insitu.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("center").required(true).args(["ra", "pixel", "catalog"])))]
#[command(group(clap::ArgGroup::new("side").required(true).args(["size", "size_arcsec"])))]
pub struct CutoutArgs {
    /// FITS image(s) (plain, tile-compressed or gzipped). With --catalog, several images (the
    /// tiles of a mosaic) may be given: each row is cut from the first one that holds it.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Right ascension of the centre, ICRS degrees.
    #[arg(long, requires = "dec", allow_hyphen_values = true)]
    pub ra: Option<f64>,
    /// Declination of the centre, ICRS degrees.
    #[arg(long, requires = "ra", allow_hyphen_values = true)]
    pub dec: Option<f64>,
    /// Pixel centre as X,Y, 0-based (the centre of the first pixel is 0,0), as astropy.
    #[arg(long, value_name = "X,Y", allow_hyphen_values = true)]
    pub pixel: Option<String>,
    /// Catalogue (CSV with ra,dec and optional id,size columns, or a FITS binary table).
    #[arg(long, value_name = "CAT")]
    pub catalog: Option<PathBuf>,
    /// Full side of the square cutout in pixels.
    #[arg(long, value_name = "PIX")]
    pub size: Option<usize>,
    /// Full side of the square cutout in arcseconds (rounded to pixels as astropy does).
    #[arg(long, value_name = "ARCSEC")]
    pub size_arcsec: Option<f64>,
    /// HDU to cut, 0-based as astropy counts (default: the first image HDU).
    #[arg(long)]
    pub hdu: Option<usize>,
    /// partial (fill outside the image), trim (keep the overlap) or strict (refuse).
    #[arg(long, default_value = "partial")]
    pub mode: String,
    /// Planes of a cube to keep, as A:B (0-based, B excluded); all planes by default.
    #[arg(long, value_name = "A:B")]
    pub planes: Option<String>,
    /// Output FITS file for a single cutout.
    #[arg(short = 'o', long = "output", value_name = "OUT.fits")]
    pub output: Option<PathBuf>,
    /// Folder for bulk cutouts: one ID.fits per catalogue row.
    #[arg(long, value_name = "DIR", requires = "catalog")]
    pub out_dir: Option<PathBuf>,
    /// One float32 .npy stack [N, H, W] of physical values for bulk cutouts.
    #[arg(long, value_name = "OUT.npy", requires = "catalog")]
    pub npy: Option<PathBuf>,
    /// One multi-extension FITS file for bulk cutouts (an IMAGE extension per row).
    #[arg(long, value_name = "OUT.fits", requires = "catalog")]
    pub mef: Option<PathBuf>,
    /// Skip bad catalogue rows (reported on stderr) instead of failing before writing anything.
    #[arg(long)]
    pub skip_bad: bool,
    /// Worker threads for bulk cutouts (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress bar and no summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// One FITS image (greyscale), or three of the same size for red, green and blue (e.g.
    /// the H, Y and VIS tiles of one field).
    #[arg(required = true, num_args = 1..=3, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// HDU to show, 0-based as astropy counts (default: the first image HDU).
    #[arg(long)]
    pub hdu: Option<usize>,
    /// Plane of a cube to show, 0-based.
    #[arg(long, default_value_t = 0)]
    pub plane: usize,
    /// linear, sqrt, log, asinh, or zscale (a linear stretch between zscale limits)
    /// [default: asinh].
    #[arg(long)]
    pub stretch: Option<String>,
    /// How each band's limits are chosen: percentile, minmax or zscale [default: percentile].
    #[arg(long)]
    pub interval: Option<String>,
    /// Keep the central P per cent of the values [default: 99.5].
    #[arg(long, value_name = "P")]
    pub percentile: Option<String>,
    /// Lower percentile (instead of --percentile) [default: 0].
    #[arg(long, value_name = "P")]
    pub plow: Option<String>,
    /// Upper percentile (instead of --percentile) [default: 100].
    #[arg(long, value_name = "P")]
    pub phigh: Option<String>,
    /// png or jpeg (default: from the output's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// JPEG quality, 1 to 100 [default: 90].
    #[arg(long, value_name = "Q")]
    pub quality: Option<String>,
    /// The image to write (.png, .jpg or .jpeg).
    #[arg(short = 'o', long = "output", value_name = "OUT.png")]
    pub output: PathBuf,
    /// No summary line.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for the demo mosaic, catalogue and cutouts.
    #[arg(long, default_value = "insitu-demo")]
    pub dir: PathBuf,
    /// Side of the demo mosaic in pixels (Euclid MER tiles are 19200).
    #[arg(long, default_value_t = 4096)]
    pub npix: usize,
    /// Number of catalogue positions.
    #[arg(long, default_value_t = 2_000)]
    pub count: usize,
    /// Cutout side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cutout(args) => crate::cutout_command::run(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Preview(args) => crate::preview_command::run(&args),
        Command::Query(args) => crate::query_command::run(&args),
        Command::Serve(args) => crate::serve_command::run(&args),
        Command::Launcher(LauncherCommand::AddUser(args)) => {
            crate::launcher_command::add_user(&args)
        }
        Command::Launcher(LauncherCommand::Check(args)) => crate::launcher_command::check(&args),
        Command::K8s(K8sCommand::Render(args)) => crate::k8s_command::render(&args),
    }
}
