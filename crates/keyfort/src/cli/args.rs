//! The command line's shape: every command and flag, parsed by clap. What each command
//! does is in the sibling modules; `main.rs` only parses and dispatches.

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
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
    /// mutual TLS (and one refused), a certificate-bound token, reading the registration back.
    Demo {
        /// Stop after the demo instead of keeping the server running until Ctrl-C.
        #[arg(long)]
        no_wait: bool,
        /// Keep the demo's directory (sandbox keys, database) at exit, readable by you only;
        /// by default it is removed.
        #[arg(long)]
        keep: bool,
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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// List the migrations and which would be applied; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print a shell completion script: `keyfort completions bash > /etc/bash_completion.d/keyfort`.
    Completions {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `keyfort man > keyfort.1; man ./keyfort.1`.
    Man,
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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
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
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox directory: directory CA, SSA signing key, keystore.
    Init {
        /// The directory to create the sandbox in.
        dir: PathBuf,
        /// Where `sandbox serve` will publish the keystore; SSAs name URLs under it.
        #[arg(long, default_value = crate::sandbox::DEFAULT_KEYSTORE_URL)]
        keystore_url: String,
    },
    /// Add an organisation's software: signing key, transport certificates (legacy OB and
    /// OBWAC profiles) and a software statement.
    AddSoftware {
        /// The sandbox directory (made by `sandbox init`).
        dir: PathBuf,
        /// Organisation name (an existing one is reused).
        #[arg(long)]
        org: String,
        /// The organisation's id (default: a new random one, as the directory's 0015800001...).
        #[arg(long)]
        org_id: Option<String>,
        /// The software's id (default: 22 random letters and digits).
        #[arg(long)]
        software_id: Option<String>,
        /// The software's client name (default: "<org> App").
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
        /// The sandbox directory whose keystore to publish.
        dir: PathBuf,
        /// Address to listen on. Default: the host and port of the keystore URL. Plain HTTP
        /// only on loopback.
        #[arg(long)]
        listen: Option<String>,
        /// Serve HTTPS (trust ca/bundle.pem); needed for any non-loopback address.
        #[arg(long)]
        https: bool,
        #[command(flatten)]
        bank: BankArgs,
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
    /// Build, sign and send a registration request from a software statement. Name the
    /// files one by one (--ssa, --signing-key, --kid, --cert, --key), or give a sandbox
    /// software directory with --software.
    Register {
        /// The bank's base URL, e.g. https://localhost:9446 (its discovery document names
        /// the registration endpoint).
        #[arg(long, value_name = "URL")]
        server: String,
        /// A sandbox software directory (`<sandbox>/software/<software_id>`, as printed by
        /// `sandbox add-software`): its SSA, signing key and kid, and transport certificate.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["ssa", "signing_key", "kid", "cert", "key"])]
        software: Option<PathBuf>,
        /// The software statement (the SSA JWT from the directory).
        #[arg(long, value_name = "FILE", required_unless_present = "software")]
        ssa: Option<PathBuf>,
        /// The software's signing key (PKCS#8 PEM), whose public key is in the SSA's software JWKS.
        #[arg(long, value_name = "PEM", required_unless_present = "software")]
        signing_key: Option<PathBuf>,
        /// The key id of --signing-key in the software JWKS (the directory shows it).
        #[arg(long, required_unless_present = "software")]
        kid: Option<String>,
        /// Transport certificate (PEM chain).
        #[arg(long, value_name = "PEM", required_unless_present = "software")]
        cert: Option<PathBuf>,
        /// Transport key (PEM).
        #[arg(long, value_name = "PEM", required_unless_present = "software")]
        key: Option<PathBuf>,
        /// Extra CA (PEM) to trust for the server, e.g. its data/dev-tls/cert.pem.
        #[arg(long, value_name = "PEM")]
        cacert: Option<PathBuf>,
        /// Send JSON (as the WSO2 sample) instead of a signed JWT.
        #[arg(long)]
        json: bool,
        /// How the client will authenticate at the token endpoint: private_key_jwt (a JWT
        /// signed with --signing-key) or tls_client_auth (the transport certificate's subject).
        #[arg(long, default_value = "private_key_jwt", value_parser = ["private_key_jwt", "tls_client_auth"])]
        auth_method: String,
        /// Where to save the registration.
        #[arg(long, value_name = "FILE", default_value = "registration.json")]
        out: PathBuf,
    },
    /// Get a client-credentials access token.
    Token {
        #[command(flatten)]
        files: TppFiles,
        /// Space-separated scopes to ask for (default: every registered scope).
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
    #[command(flatten)]
    Journey(TppJourneyCommand),
}

#[derive(Subcommand)]
pub enum JwtCommand {
    /// Print a JWT's header and claims (not verified). FILE or - for standard input.
    Decode {
        /// The file holding the JWT, or - for standard input.
        file: String,
    },
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Add an administrator. The password is asked for twice at a prompt, or read from the
    /// first line of standard input with --password-stdin; never from an argument.
    AddUser {
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
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
    /// List, show or revoke customers' consents through the admin API.
    Consents {
        #[command(flatten)]
        connection: AdminConnection,
        #[command(subcommand)]
        command: ConsentsCommand,
    },
    /// Read the audit trail through the admin API.
    Audit {
        #[command(flatten)]
        connection: AdminConnection,
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// How audit events are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum AuditFormat {
    /// One JSON object per line, times in RFC 3339.
    Jsonl,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write every audit event matching the filters, oldest first, e.g.
    /// `keyfort admin audit export --since 2026-11-01T00:00:00Z --format jsonl > audit.jsonl`.
    Export {
        /// Events at or after this RFC 3339 time (or date), e.g. 2026-11-01T00:00:00Z.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Events before this RFC 3339 time (or date).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Only events about this client.
        #[arg(long)]
        client_id: Option<String>,
        /// Only events of this organisation.
        #[arg(long)]
        org_id: Option<String>,
        /// Only events of this software.
        #[arg(long)]
        software_id: Option<String>,
        /// Only this action: register, read, update, delete, suspend, reactivate, consent_create, ...
        #[arg(long)]
        action: Option<String>,
        /// success, refused (any refusal), or one error code such as invalid_client.
        #[arg(long)]
        outcome: Option<String>,
        /// The output format.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: AuditFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct AdminConnection {
    /// The admin API's base URL. Default: found from --config ([admin] listen), else
    /// https://127.0.0.1:9447.
    #[arg(long, global = true)]
    pub server: Option<String>,
    /// The server's configuration file: the admin API's address ([admin] listen), and the
    /// development certificate to trust when it has no [server.tls] files.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The administrator's name. The password comes from KEYFORT_ADMIN_PASSWORD, standard
    /// input (--password-stdin) or a prompt.
    #[arg(long, global = true, default_value = "admin")]
    pub user: String,
    /// Read the password from the first line of standard input.
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
        /// Only this organisation's registrations.
        #[arg(long)]
        org_id: Option<String>,
        /// Only this software's registrations.
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
        /// The most registrations to list (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one registration with its audit trail.
    Show {
        /// The registration's client_id.
        client_id: String,
    },
    /// Suspend a client: no tokens, no self-management, until reactivated.
    Suspend {
        /// The registration's client_id.
        client_id: String,
    },
    /// Reactivate a suspended client.
    Reactivate {
        /// The registration's client_id.
        client_id: String,
    },
    /// Delete a registration.
    Delete {
        /// The registration's client_id.
        client_id: String,
    },
}

#[derive(Subcommand)]
pub enum ConsentsCommand {
    /// List consents, newest first.
    List {
        /// Only consents of this client.
        #[arg(long)]
        client_id: Option<String>,
        /// The customer's id (as `keyfort customers list` shows it).
        #[arg(long)]
        customer: Option<String>,
        /// AwaitingAuthorisation, Authorised, Rejected, Revoked or Consumed.
        #[arg(long)]
        status: Option<String>,
        /// account-access, domestic-payment or funds-confirmation.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Only consents created after this Unix time.
        #[arg(long)]
        created_after: Option<i64>,
        /// Only consents created before this Unix time.
        #[arg(long)]
        created_before: Option<i64>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Show one consent with its audit trail.
    Show {
        /// The ConsentId.
        consent_id: String,
    },
    /// Withdraw the TPP's access: an account-access or funds-confirmation consent becomes
    /// Revoked; a payment consent's tokens are revoked. Every token issued under it stops
    /// working.
    Revoke {
        /// The ConsentId.
        consent_id: String,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create the next signing key, signing after --publish-ahead seconds (default
    /// [oauth.token] key_publish_ahead_seconds). Running servers publish it in /oauth2/jwks
    /// when they next re-read the keys (within [oauth.token] key_reload_seconds, which
    /// --publish-ahead may not be shorter than). The previous key stays published until the
    /// tokens it signed have expired.
    Rotate {
        /// The configuration file (TOML; keys can also come from KEYFORT_SECTION__KEY variables).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// How long the new key is published before it signs (default [oauth.token]
        /// key_publish_ahead_seconds; at least key_reload_seconds).
        #[arg(long, value_name = "SECONDS")]
        publish_ahead: Option<i64>,
    },
    /// Re-encrypt every signing key in the database under a new key-encryption key (the
    /// rotation of the key that protects them at rest). The configured key opens them;
    /// NEW_KEY_FILE (created owner-only when missing) wraps them. Then point [storage]
    /// key_encryption_key_file at it on every node and restart.
    Rewrap {
        /// The server's configuration: its database and current key-encryption key.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The new key-encryption key: 32 random bytes in base64 (created when missing).
        #[arg(long, value_name = "NEW_KEY_FILE")]
        new_key_file: PathBuf,
    },
}

/// `sandbox serve --bank`: the sandbox bank beside the keystore.
#[derive(Args)]
pub struct BankArgs {
    /// Also serve the sandbox bank (OBIE account information over mutual TLS), which asks
    /// Keyfort (--keyfort) about every access token.
    #[arg(long)]
    pub bank: bool,
    /// Keyfort's base URL, e.g. https://localhost:9446: where the bank validates tokens.
    #[arg(long, value_name = "URL", requires = "bank")]
    pub keyfort: Option<String>,
    /// Extra CA certificate (PEM) to trust for Keyfort, e.g. data/dev-tls/cert.pem.
    #[arg(long, value_name = "PEM", requires = "bank")]
    pub keyfort_cacert: Option<PathBuf>,
    /// Where the bank listens (a loopback address; its certificate names localhost).
    #[arg(long, value_name = "ADDR", default_value = crate::sandbox::bank::DEFAULT_BANK_LISTEN)]
    pub bank_listen: String,
}

/// The TPP's side of the customer's journey: consent, authorization, tokens, accounts.
/// What they remember (the consent, nonce, state, PKCE verifier, tokens) is kept in a file
/// next to the registration file, `<registration>.journey.json`, readable by its owner only.
#[derive(Subcommand)]
pub enum TppJourneyCommand {
    /// Create, read or revoke an Open Banking consent (intent), with a client-credentials token.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Print the URL that sends the customer to the bank to authorise the consent: a fresh
    /// request object signed with the software's key, with a nonce, a state and a PKCE
    /// verifier that `tpp callback` checks.
    Authorize {
        #[command(flatten)]
        files: TppFiles,
        /// The consent to authorise. Default: the one `tpp consent create` made last.
        #[arg(long)]
        consent: Option<String>,
        /// Where the bank sends the browser back: one of the software's redirect URIs
        /// (default: its first).
        #[arg(long)]
        redirect_uri: Option<String>,
    },
    /// Finish the authorization with the address the browser landed on: check the ID token
    /// (signature, iss, aud, nonce, c_hash, s_hash, openbanking_intent_id), exchange the code
    /// over mutual TLS, and save the tokens.
    Callback {
        #[command(flatten)]
        files: TppFiles,
        /// The whole address from the browser's address bar, with its #fragment (quote it).
        url: String,
    },
    /// Read the customer's accounts from the bank with the access token, over mutual TLS
    /// with the transport certificate.
    Accounts {
        #[command(flatten)]
        files: TppFiles,
        /// The bank's base URL (`keyfort sandbox serve --bank` prints it).
        #[arg(long, value_name = "URL", default_value = "https://localhost:8091")]
        bank: String,
        /// Extra CA certificate (PEM) to trust for the bank, e.g. the sandbox's ca/bundle.pem.
        #[arg(long, value_name = "PEM")]
        bank_cacert: Option<PathBuf>,
        /// Read one account instead of the list.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// Read that account's balances.
        #[arg(long, requires = "account")]
        balances: bool,
    },
    /// Get a new access token with the saved refresh token.
    Refresh {
        #[command(flatten)]
        files: TppFiles,
    },
}

#[derive(Subcommand)]
pub enum ConsentCommand {
    /// Create a consent: the body from the flags (or --body), an x-idempotency-key and an
    /// x-jws-signature signed with the software's key. Remembers its ConsentId.
    Create {
        #[command(flatten)]
        files: TppFiles,
        /// The consent type.
        #[arg(long = "type", value_name = "TYPE", value_parser = ["account-access", "domestic-payment", "funds-confirmation"])]
        kind: String,
        #[command(flatten)]
        details: Box<ConsentDetails>,
        /// Send this file's JSON as the body instead of one built from the flags.
        #[arg(long, value_name = "FILE")]
        body: Option<PathBuf>,
        /// The x-idempotency-key (default: a new random one).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Read a consent (default: the one created last).
    Get {
        #[command(flatten)]
        files: TppFiles,
        /// The ConsentId (default: the one `tpp consent create` made last).
        consent: Option<String>,
    },
    /// Revoke a consent (DELETE; default: the one created last).
    Delete {
        #[command(flatten)]
        files: TppFiles,
        /// The ConsentId (default: the one `tpp consent create` made last).
        consent: Option<String>,
    },
}

/// What a consent asks for, by type.
#[derive(Args, Clone, Debug)]
pub struct ConsentDetails {
    /// account-access: OBIE permissions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ReadAccountsDetail,ReadBalances")]
    pub permissions: Vec<String>,
    /// account-access, funds-confirmation: days until the consent's ExpirationDateTime.
    #[arg(long, value_name = "DAYS", default_value_t = 90)]
    pub expires_in_days: u32,
    /// domestic-payment: the amount, e.g. 10.00.
    #[arg(long)]
    pub amount: Option<String>,
    /// domestic-payment: ISO 4217 currency.
    #[arg(long, default_value = "GBP")]
    pub currency: String,
    /// domestic-payment: the payee's name.
    #[arg(long)]
    pub creditor_name: Option<String>,
    /// domestic-payment: the payee's account in --scheme (sort code and account number: 14 digits).
    #[arg(long, value_name = "NUMBER")]
    pub creditor_account: Option<String>,
    /// domestic-payment: the payment reference.
    #[arg(long)]
    pub reference: Option<String>,
    /// funds-confirmation: the customer's account in --scheme.
    #[arg(long, value_name = "NUMBER")]
    pub debtor_account: Option<String>,
    /// The scheme of --creditor-account and --debtor-account.
    #[arg(long, default_value = "UK.OBIE.SortCodeAccountNumber")]
    pub scheme: String,
}

/// `keyfort completions SHELL`: the completion script for the whole command line.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<String> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "keyfort", &mut out);
    Ok(String::from_utf8(out)?)
}

/// `keyfort man`: the manual page, with a section per command and subcommand, so that
/// `man keyfort` documents every flag in one page.
pub fn man_page() -> anyhow::Result<String> {
    let command = Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut out)?;
    let mut out = String::from_utf8(out)?;
    fn sections(command: &clap::Command, path: &str, out: &mut String) -> anyhow::Result<()> {
        for sub in command.get_subcommands().filter(|c| c.get_name() != "help") {
            let name = format!("{path} {}", sub.get_name());
            let mut page = Vec::new();
            let page_command = sub.clone().display_name(name.replace(' ', "-")).bin_name(name.clone());
            clap_mangen::Man::new(page_command).render(&mut page)?;
            let page = String::from_utf8(page)?;
            // Everything after the page header (.TH), as sections of this page.
            let body: Vec<&str> = page.lines().skip_while(|l| !l.starts_with(".SH")).collect();
            out.push_str(&body.join("\n").replace(".SH NAME", &format!(".SH \"COMMAND: {name}\"")));
            out.push('\n');
            sections(sub, &name, out)?;
        }
        Ok(())
    }
    sections(&command, "keyfort", &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every argument of every command says what it is for in `--help`.
    #[test]
    fn every_flag_has_help_text() {
        fn visit(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                visit(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        visit(&Cli::command(), "keyfort", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
