//! The command line's shape: every command and flag, parsed by clap. What each command
//! does is in the sibling modules; `main.rs` only parses and dispatches.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Keyfort: an Open Banking identity server (Dynamic Client Registration with software
/// statements, FAPI client-credentials tokens, registration management).
#[derive(Parser)]
#[command(name = "keyfort", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve HTTPS with the given configuration.
    Serve {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Development only: run this sandbox directory's keystore inside the server (over
        /// HTTPS when its keystore URL is https) and trust it as the Open Banking directory
        /// (and its CA for transport certificates).
        #[arg(long, value_name = "DIR", requires = "dev")]
        sandbox: Option<PathBuf>,
        /// Allow development-only options such as --sandbox.
        #[arg(long)]
        dev: bool,
    },
    /// Run the whole onboarding offline: sandbox directory, server, a TPP registering over
    /// mutual TLS, a certificate-bound token, reading the registration back.
    Demo {
        /// Stop after the demo instead of keeping the server running until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
    },
    /// An offline stand-in for the Open Banking directory.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
    },
    /// The TPP's side: register, get tokens, read, update and delete the registration.
    Tpp {
        #[command(subcommand)]
        command: TppCommand,
    },
    /// JWT tools.
    Jwt {
        #[command(subcommand)]
        command: JwtCommand,
    },
    /// Check a configuration file and exit: 0 when it is valid.
    CheckConfig {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Administrators, and the operator's view of registrations.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Apply the database migrations this version needs (or list them with --dry-run).
    /// `serve` applies them at start unless [storage] migrate_on_start = false.
    Migrate {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// List the migrations and which would be applied; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Manage the access token signing keys (stored in the configured database).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write a Keyfort configuration from a WSO2 Identity Server deployment.toml, and print
    /// what was carried over and what could not be, and why.
    #[command(name = "import-wso2")]
    ImportWso2 {
        /// The WSO2 file, e.g. <IS_HOME>/repository/conf/deployment.toml.
        #[arg(value_name = "DEPLOYMENT_TOML")]
        file: PathBuf,
        /// Where to write the Keyfort configuration (- for standard output).
        #[arg(long, short, value_name = "FILE", default_value = "keyfort.toml")]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Bank customers (PSUs) of the built-in customer store, and their accounts.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
}

#[derive(Subcommand)]
pub enum CustomersCommand {
    /// Add a customer. The password is asked for twice at a prompt, or read from the first
    /// line of standard input with --password-stdin; never from an argument. With --totp,
    /// the customer also needs a one-time code from an authenticator app: the secret and an
    /// otpauth:// URI are printed once.
    Add {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The name the customer signs in with.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Require a one-time code (RFC 6238) at sign-in.
        #[arg(long)]
        totp: bool,
    },
    /// Add an account to a customer.
    AddAccount {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The customer's username.
        username: String,
        /// The account's id, unique in the bank (what an authorised consent records).
        #[arg(long)]
        account_id: String,
        /// The account's name, shown on the consent page.
        #[arg(long)]
        name: String,
        /// The OBIE scheme of --identification, e.g. UK.OBIE.SortCodeAccountNumber or UK.OBIE.IBAN.
        #[arg(long)]
        scheme: String,
        /// The account number in that scheme, e.g. 60304560123456 (sort code and account number).
        #[arg(long)]
        identification: String,
        /// ISO 4217 currency code, e.g. GBP.
        #[arg(long)]
        currency: String,
        /// A secondary identification (a building society roll number).
        #[arg(long)]
        secondary_identification: Option<String>,
    },
    /// List customers with their ids, whether they use one-time codes, and their accounts
    /// (never a password or secret).
    List {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox directory: directory CA, SSA signing key, keystore.
    Init {
        dir: PathBuf,
        /// Where `sandbox serve` will publish the keystore; SSAs name URLs under it.
        #[arg(long, default_value = crate::sandbox::DEFAULT_KEYSTORE_URL)]
        keystore_url: String,
    },
    /// Add an organisation's software: signing key, transport certificates (legacy OB and
    /// OBWAC profiles) and a software statement.
    AddSoftware {
        dir: PathBuf,
        /// Organisation name (an existing one is reused).
        #[arg(long)]
        org: String,
        #[arg(long)]
        org_id: Option<String>,
        #[arg(long)]
        software_id: Option<String>,
        #[arg(long)]
        client_name: Option<String>,
        /// Comma-separated roles: AISP, PISP, CBPII.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// A redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required = true)]
        redirect_uris: Vec<String>,
    },
    /// Publish the keystore (JWKS): over HTTP on a loopback address, or over HTTPS with a
    /// certificate from the sandbox CA (--https).
    Serve {
        dir: PathBuf,
        /// Address to listen on. Default: the host and port of the keystore URL. Plain HTTP
        /// only on loopback.
        #[arg(long)]
        listen: Option<String>,
        /// Serve HTTPS (trust ca/bundle.pem); needed for any non-loopback address.
        #[arg(long)]
        https: bool,
    },
}

#[derive(Args, Clone)]
pub struct TppFiles {
    /// The registration file written by `tpp register`.
    #[arg(long, value_name = "FILE", default_value = "registration.json")]
    pub registration: PathBuf,
}

#[derive(Subcommand)]
pub enum TppCommand {
    /// Build, sign and send a registration request from a software statement.
    Register {
        #[arg(long)]
        server: String,
        #[arg(long, value_name = "FILE")]
        ssa: PathBuf,
        #[arg(long, value_name = "PEM")]
        signing_key: PathBuf,
        #[arg(long)]
        kid: String,
        /// Transport certificate (PEM chain).
        #[arg(long, value_name = "PEM")]
        cert: PathBuf,
        /// Transport key (PEM).
        #[arg(long, value_name = "PEM")]
        key: PathBuf,
        /// Extra CA (PEM) to trust for the server.
        #[arg(long, value_name = "PEM")]
        cacert: Option<PathBuf>,
        /// Send JSON (as the WSO2 sample) instead of a signed JWT.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "private_key_jwt")]
        auth_method: String,
        /// Where to save the registration.
        #[arg(long, value_name = "FILE", default_value = "registration.json")]
        out: PathBuf,
    },
    /// Get a client-credentials access token.
    Token {
        #[command(flatten)]
        files: TppFiles,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Read the registration.
    Get {
        #[command(flatten)]
        files: TppFiles,
    },
    /// Send the registration again (fresh request) as an update.
    Update {
        #[command(flatten)]
        files: TppFiles,
    },
    /// Delete the registration.
    Delete {
        #[command(flatten)]
        files: TppFiles,
    },
}

#[derive(Subcommand)]
pub enum JwtCommand {
    /// Print a JWT's header and claims (not verified). FILE or - for standard input.
    Decode { file: String },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add an administrator. The password is asked for twice at a prompt, or read from the
    /// first line of standard input with --password-stdin; never from an argument.
    AddUser {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The administrator's name.
        username: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List, show, suspend, reactivate or delete registrations through the admin API.
    Clients {
        #[command(flatten)]
        connection: AdminConnection,
        #[command(subcommand)]
        command: ClientsCommand,
    },
}

#[derive(Args)]
pub struct AdminConnection {
    /// The server's base URL, e.g. https://localhost:9446.
    #[arg(long, global = true, default_value = "https://localhost:9446")]
    pub server: String,
    /// The administrator's name. The password comes from KEYFORT_ADMIN_PASSWORD, standard
    /// input (--password-stdin) or a prompt.
    #[arg(long, global = true, default_value = "admin")]
    pub user: String,
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// Extra CA certificate (PEM) to trust for the server, e.g. data/dev-tls/cert.pem.
    #[arg(long, global = true, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// List registrations, newest first.
    List {
        #[arg(long)]
        org_id: Option<String>,
        #[arg(long)]
        software_id: Option<String>,
        /// active, suspended or deleted.
        #[arg(long)]
        status: Option<String>,
        /// Only registrations after this Unix time.
        #[arg(long)]
        registered_after: Option<i64>,
        /// Only registrations before this Unix time.
        #[arg(long)]
        registered_before: Option<i64>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one registration with its audit trail.
    Show { client_id: String },
    /// Suspend a client: no tokens, no self-management, until reactivated.
    Suspend { client_id: String },
    /// Reactivate a suspended client.
    Reactivate { client_id: String },
    /// Delete a registration.
    Delete { client_id: String },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create the next signing key, signing after --publish-ahead seconds (default
    /// [oauth.token] key_publish_ahead_seconds). Running servers publish it in /oauth2/jwks
    /// when they next re-read the keys (within [oauth.token] key_reload_seconds, which
    /// --publish-ahead may not be shorter than). The previous key stays published until the
    /// tokens it signed have expired.
    Rotate {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "SECONDS")]
        publish_ahead: Option<i64>,
    },
}
