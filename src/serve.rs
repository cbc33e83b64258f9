//! `ballast serve`: loads the configuration, opens the core, binds the
//! plugin and admin sockets (or takes them from systemd), and runs until
//! SIGTERM/SIGINT. Shutdown stops accepting, lets requests in flight
//! finish (for a while: see [`REQUESTS_GRACE`]), leaves volume mounts in
//! place and removes the socket files.
//! `serve/reference.rs`: the configuration reference, the config file's
//! keys with these flags; `serve/check.rs`: the start-up checks of the
//! configuration against the host, which `ballast config check` runs too.

mod check;
mod lock;
mod reference;
mod tls;

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::{self, Config};
use crate::core::Ballast;
use crate::listen::{self, Limits};
use crate::sys::{self, Inherited};
use crate::{admin, docker};

pub use check::host as check_host;
pub use reference::configuration_reference;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the configuration and the state are: flags of `ballast serve`,
/// and of `ballast config check`, which so reads the file the daemon will.
#[derive(Debug, Args)]
pub struct ConfigFiles {
    /// Configuration file; the default one may be missing (built-in
    /// defaults then) [default: /etc/ballast/ballast.toml]
    #[arg(long, env = "BALLAST_CONFIG")]
    pub config: Option<PathBuf>,
    /// Metadata store and the default pool
    #[arg(long, env = "BALLAST_STATE_DIR", default_value = "/var/lib/ballast")]
    pub state_dir: PathBuf,
}

impl ConfigFiles {
    /// The file to read, and whether the user named it (a named file must
    /// exist).
    pub fn path(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(config::DEFAULT_CONFIG), false),
        }
    }

    /// Reads and validates the configuration.
    pub fn load(&self) -> Result<Config, String> {
        let (path, explicit) = self.path();
        Config::load(&path, explicit, &self.state_dir)
    }
}

/// Flags of `ballast serve` (docs/design.md, "One binary, two roles").
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub files: ConfigFiles,
    /// Docker plugin socket; the driver name is its file stem
    #[arg(long, env = "BALLAST_PLUGIN_SOCKET", default_value = "/run/docker/plugins/ballast.sock")]
    pub plugin_socket: PathBuf,
    /// Admin endpoint socket (mode 0600)
    #[arg(long, env = "BALLAST_ADMIN_SOCKET", default_value = "/run/ballast/admin.sock")]
    pub admin_socket: PathBuf,
    /// TCP admin listener (needs [admin] credentials in the config)
    #[arg(long, env = "BALLAST_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Where Docker is handed mounted volumes (a managed plugin's
    /// propagated mount): volume 1v7 as a bind at DIR/1v7, made on its
    /// first Mount and taken off after its last Unmount. Unset, Docker is
    /// handed the volume's own path
    #[arg(long, env = "BALLAST_MOUNT_ROOT", value_name = "DIR")]
    pub mount_root: Option<PathBuf>,
    /// Log format; the level comes from RUST_LOG (default info)
    #[arg(long, env = "BALLAST_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Runs the daemon to completion. Must be called before any other thread
/// exists (it takes systemd's sockets from the environment).
pub fn run(args: ServeArgs) -> Result<(), String> {
    let inherited = sys::take_inherited_listeners();
    init_logging(args.log_format);
    let config = args.files.load()?;
    // Before anything is made or bound.
    let socket_gid = check::socket_group(&config)?;
    let tcp_credentials =
        match (&args.admin_listen, &config.admin.access_key, &config.admin.secret_key) {
            (None, _, _) => None,
            (Some(_), Some(access), Some(secret)) => Some(admin::Credentials::new(access, secret)),
            (Some(addr), _, _) => {
                return Err(format!(
                    "--admin-listen {addr}: the TCP admin listener needs [admin] access_key and \
                     secret_key in the config"
                ));
            }
        };
    let tcp_tls = match &args.admin_listen {
        Some(addr) => tls::for_listener(addr, &config.admin)?,
        None => None,
    };
    let fd_limit = listen::raise_fd_limit();
    let listeners = if args.admin_listen.is_some() {
        &[Limits::PLUGIN, Limits::ADMIN, Limits::TCP][..]
    } else {
        &[Limits::PLUGIN, Limits::ADMIN][..]
    };
    listen::check_fd_budget(fd_limit, listeners);
    make_private_dir("state directory", &args.files.state_dir)?;
    // Before the store or a pool is touched: start-up recovery would clear
    // a running daemon's staging areas.
    let _state_lock = lock::take(&args.files.state_dir)?;
    // Home of the pools that the config does not place elsewhere.
    make_private_dir("state directory", &args.files.state_dir.join("pools"))?;
    if let Some(dir) = &args.mount_root {
        // Private like the state: the binds are the volumes' own roots.
        make_private_dir("--mount-root", dir)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    let tcp = tcp_credentials.map(|creds| (creds, tcp_tls));
    runtime.block_on(serve(args, config, inherited, tcp, socket_gid))?;
    // Dropping the runtime would wait for every job on a blocking thread
    // (a snapshot's copy, a backup), however long it takes.
    runtime.shutdown_timeout(JOBS_GRACE);
    tracing::info!("stopped");
    Ok(())
}

/// How long a shutdown waits for requests in flight to be answered, then
/// for jobs still running (a snapshot's copy, a backup). Past that the
/// process exits anyway: what was cut short is finished or undone at the
/// next start, as after a crash. Well within systemd's stop timeout.
const REQUESTS_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
const JOBS_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn serve(
    args: ServeArgs,
    config: Config,
    mut inherited: Vec<Inherited>,
    tcp: Option<(admin::Credentials, Option<TlsAcceptor>)>,
    socket_gid: Option<u32>,
) -> Result<(), String> {
    // Handlers go in before any socket exists: a SIGTERM sent as soon as
    // the socket answers (systemd, a test) must stop us cleanly, not kill
    // us with the default action and leave the sockets behind.
    let signals = Signals::install();
    // Exposed mountpoints are back in place before any socket answers.
    let ballast =
        Ballast::open_exposing(&config, &args.files.state_dir, args.mount_root.as_deref())?;
    if let Some(cluster) = &config.cluster {
        // Returns at once: local volumes are served while etcd is down.
        ballast.join(crate::cluster::Etcd::start(cluster));
    }
    let metrics = crate::metrics::Metrics::new(ballast.clone());
    let admin_state = admin::Admin {
        ballast: ballast.clone(),
        metrics: metrics.clone(),
        driver: args.plugin_socket.file_stem().unwrap_or_default().to_string_lossy().into(),
        trust_forwarded: config.admin.trust_forwarded_headers,
        tls: false,
    };
    let tcp = match (&args.admin_listen, tcp) {
        (Some(addr), Some((creds, tls))) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--admin-listen {addr}: {e}"))?;
            Some((listener, creds, tls))
        }
        _ => None,
    };
    let plugin = listen(&args.plugin_socket, "plugin", &mut inherited)?;
    let admin_sock = listen(&args.admin_socket, "admin", &mut inherited)?;
    // A socket systemd opened that no flag names would be one nobody
    // serves: Docker would wait on it forever.
    if let Some(stray) = inherited.first() {
        for (sock, bound) in
            [(&args.plugin_socket, plugin.bound), (&args.admin_socket, admin_sock.bound)]
        {
            if bound {
                let _ = std::fs::remove_file(sock);
            }
        }
        let at = stray.listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_owned));
        let at = at.map_or_else(|| "an unnamed socket".into(), |p| p.display().to_string());
        return Err(format!(
            "systemd passed the socket {at}, which is neither --plugin-socket {} nor \
             --admin-socket {}: make the socket unit's ListenStream= and the flags agree",
            args.plugin_socket.display(),
            args.admin_socket.display()
        ));
    }
    match (socket_gid, &config.admin.socket_group) {
        (Some(gid), _) if admin_sock.bound => share_with_group(&args.admin_socket, gid)?,
        (_, Some(group)) if !admin_sock.bound => tracing::warn!(
            %group,
            "[admin] socket_group is not applied: systemd opened the admin socket; set \
             SocketGroup= and SocketMode=0660 in the socket unit instead"
        ),
        _ => {}
    }
    tracing::info!(
        plugin = %args.plugin_socket.display(),
        admin = %args.admin_socket.display(),
        driver = %args.plugin_socket.file_stem().unwrap_or_default().to_string_lossy(),
        "ballast serving"
    );
    if let Err(e) = sys::notify_systemd("READY=1") {
        tracing::warn!(error = %e, "could not tell systemd that ballast is ready");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let janitor = tokio::spawn(janitor(ballast.clone(), stop_rx.clone()));
    let plugin_srv = tokio::spawn(listen::serve(
        plugin.listener,
        "plugin",
        Limits::PLUGIN,
        docker::router(ballast.clone(), metrics.clone()),
        None,
        stop_rx.clone(),
    ));
    let admin_srv = tokio::spawn(listen::serve(
        admin_sock.listener,
        "admin",
        Limits::ADMIN,
        admin::router(admin_state.clone(), None),
        None,
        stop_rx.clone(),
    ));
    let tcp_srv = tcp.map(|(listener, creds, tls)| {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%addr, scheme, "admin endpoint on TCP (basic auth)");
        let state = admin::Admin { tls: tls.is_some(), ..admin_state.clone() };
        tokio::spawn(listen::serve(
            listener,
            "tcp-admin",
            Limits::TCP,
            admin::router(state, Some(creds)),
            tls,
            stop_rx.clone(),
        ))
    });

    signals.wait().await;
    tracing::info!("shutting down: finishing requests in flight; volume mounts stay in place");
    let _ = sys::notify_systemd("STOPPING=1");
    let _ = stop_tx.send(true);
    let finished = async {
        for srv in [Some(plugin_srv), Some(admin_srv), tcp_srv].into_iter().flatten() {
            if let Err(e) = srv.await {
                tracing::error!(error = %e, "server error during shutdown");
            }
        }
        let _ = janitor.await;
    };
    if tokio::time::timeout(REQUESTS_GRACE, finished).await.is_err() {
        tracing::warn!(
            grace = ?REQUESTS_GRACE,
            "requests still in flight at shutdown are cut short; the next start finishes or \
             undoes their work"
        );
    }
    // A volume unmounted just before the stop is let go in etcd now.
    ballast.settle_releases(JOBS_GRACE).await;
    for (sock, bound) in
        [(&args.plugin_socket, plugin.bound), (&args.admin_socket, admin_sock.bound)]
    {
        if bound {
            let _ = std::fs::remove_file(sock);
        }
    }
    Ok(())
}

struct Listening {
    listener: UnixListener,
    /// Whether we bound it (and so remove the file at exit) or systemd did.
    bound: bool,
}

/// Takes the socket from systemd when it passed one for this role (by
/// `FileDescriptorName=` or by path), else binds it root-only.
fn listen(path: &Path, role: &str, inherited: &mut Vec<Inherited>) -> Result<Listening, String> {
    let matches = |i: &Inherited| {
        i.name.as_deref() == Some(role)
            || i.listener.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p == path))
                == Some(true)
    };
    if let Some(pos) = inherited.iter().position(matches) {
        let i = inherited.remove(pos);
        i.listener.set_nonblocking(true).map_err(|e| format!("{role} socket from systemd: {e}"))?;
        let listener = UnixListener::from_std(i.listener)
            .map_err(|e| format!("{role} socket from systemd: {e}"))?;
        return Ok(Listening { listener, bound: false });
    }
    bind(path)
        .map(|listener| Listening { listener, bound: true })
        .map_err(|e| format!("{role} socket {}: {e}", path.display()))
}

/// The mode of the sockets this daemon binds: root's alone (the admin
/// socket is opened to `[admin] socket_group` after).
const SOCKET_MODE: u32 = 0o600;

fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another daemon is already listening there: stop it, or give this one \
                     other --plugin-socket and --admin-socket paths",
                ));
            }
            std::fs::remove_file(path)?; // stale, left by a crash
        }
        Ok(_) => {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "exists and is not a socket"));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // The umask makes the socket root-only from the moment it exists; the
    // chmod states the mode explicitly.
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o777 & !SOCKET_MODE));
    let listener = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = listener?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))?;
    Ok(listener)
}

/// Opens the admin socket to a group (mode 0660).
fn share_with_group(path: &Path, gid: u32) -> Result<(), String> {
    std::os::unix::fs::chown(path, None, Some(gid))
        .map_err(|e| format!("admin socket: chown: {e}"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| format!("admin socket: chmod: {e}"))
}

fn make_private_dir(what: &str, dir: &Path) -> Result<(), String> {
    let err = |e: io::Error| format!("{what} {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(err)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

async fn janitor(ballast: Ballast, mut stop: watch::Receiver<bool>) {
    loop {
        ballast.attach_pools();
        // Fills cut by a crash start again once their pool and source can.
        ballast.resume_fills().await;
        ballast.run_schedules().await;
        match ballast.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "trash: purged expired volumes"),
            Err(e) => tracing::error!(error = %e, "trash: purge pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ballast.janitor_period()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// SIGTERM and SIGINT, caught from start-up on.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).expect("installing the SIGTERM handler"),
            int: signal(SignalKind::interrupt()).expect("installing the SIGINT handler"),
        }
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The S3 request signer logs the credentials it loads at debug level:
    // never below info for it, whatever RUST_LOG asks.
    let filter =
        ["reqsign=info", "reqsign_core=info", "reqsign_aws_core=info", "reqsign_aws_v4=info"]
            .into_iter()
            .fold(filter, |f, d| f.add_directive(d.parse().expect("a valid directive")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
