//! Customers (PSUs): the built-in directory's sign-in rules (passwords, one-time codes,
//! lockout in the database, bounds per unknown username and per address), and
//! `keyfort customers` run as a user would, with the real binary.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keyfort::config::Config;
use keyfort::customers::manage::{add_customer, NewAccount};
use keyfort::customers::{AccountLookup, CustomerDirectory, SignInRefused, StoreAccountLookup, StoreCustomerDirectory};
use keyfort::storage::{SqliteStore, Store};
use keyfort_core::clock::ManualClock;
use keyfort_core::totp::TotpSecret;

const PASSWORD: &str = "correct horse battery";
const NOW: i64 = 1_800_000_000;

fn peer(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, last))
}

struct Bank {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Bank {
    async fn new(customers: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[development]\nallow_unsafe_registration = true\n[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://bank.example\"\ndata_dir = \"data\"\n\
             [oauth.dcr]\nssa_jkws = \"https://keystore.example/dir.jwks\"\n[customers]\n{customers}\n"
        );
        let config = Config::from_toml(&text, "test.toml", dir.path()).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage.url).await.unwrap());
        Self { store, clock: Arc::new(ManualClock::new(NOW)), config, _dir: dir }
    }

    /// A directory over this bank's database, as one node of a cluster would have.
    fn node(&self) -> StoreCustomerDirectory {
        StoreCustomerDirectory::new(self.store.clone(), self.clock.clone(), self.config.customers.clone())
    }

    async fn add(&self, username: &str, totp: bool) -> (String, Option<TotpSecret>) {
        let added =
            add_customer(self.store.as_ref(), &self.config.customers, username, PASSWORD, totp, NOW).await.unwrap();
        (added.customer_id, added.totp)
    }
}

#[tokio::test]
async fn a_password_signs_in_and_repeated_failures_lock_the_customer() {
    let bank = Bank::new("max_failed_logins = 3\nlockout_seconds = 120").await;
    let (id, _) = bank.add("ann", false).await;
    let node = bank.node();
    let ann = node.sign_in("ann", PASSWORD, None, peer(1)).await.unwrap();
    assert_eq!((ann.id.as_str(), ann.username.as_str()), (id.as_str(), "ann"));
    assert_eq!(node.sign_in("ann", "wrong", None, peer(1)).await, Err(SignInRefused::WrongCredentials));
    assert_eq!(node.sign_in("ann", "wrong", None, peer(1)).await, Err(SignInRefused::WrongCredentials));
    // The third failure locks, for lockout_seconds.
    assert_eq!(
        node.sign_in("ann", "wrong", None, peer(1)).await,
        Err(SignInRefused::Locked { retry_after: Duration::from_secs(120) })
    );
    // Locked even with the right password, and on every node: the lock is in the database.
    assert!(matches!(node.sign_in("ann", PASSWORD, None, peer(2)).await, Err(SignInRefused::Locked { .. })));
    let other_node = bank.node();
    match other_node.sign_in("ann", PASSWORD, None, peer(3)).await {
        Err(SignInRefused::Locked { retry_after }) => assert_eq!(retry_after, Duration::from_secs(120)),
        other => panic!("{other:?}"),
    }
    bank.clock.advance(121);
    assert_eq!(other_node.sign_in("ann", PASSWORD, None, peer(3)).await.unwrap().id, id);
    // Success cleared the count: two failures do not lock.
    for _ in 0..2 {
        assert_eq!(node.sign_in("ann", "wrong", None, peer(4)).await, Err(SignInRefused::WrongCredentials));
    }
    assert!(node.sign_in("ann", PASSWORD, None, peer(4)).await.is_ok());
    // Absurd input is simply wrong.
    assert_eq!(node.sign_in("", PASSWORD, None, peer(5)).await, Err(SignInRefused::WrongCredentials));
    assert_eq!(node.sign_in(&"a".repeat(300), PASSWORD, None, peer(5)).await, Err(SignInRefused::WrongCredentials));
    assert_eq!(node.sign_in("ann", &"p".repeat(2000), None, peer(5)).await, Err(SignInRefused::WrongCredentials));
}

#[tokio::test]
async fn an_unknown_username_behaves_like_a_known_one() {
    let bank = Bank::new("max_failed_logins = 3").await;
    let node = bank.node();
    for _ in 0..2 {
        assert_eq!(node.sign_in("nobody", PASSWORD, None, peer(1)).await, Err(SignInRefused::WrongCredentials));
    }
    assert_eq!(
        node.sign_in("nobody", PASSWORD, None, peer(2)).await,
        Err(SignInRefused::Locked { retry_after: Duration::from_secs(300) })
    );
    assert!(matches!(node.sign_in("nobody", PASSWORD, None, peer(3)).await, Err(SignInRefused::Locked { .. })));
    // Nothing about it reached the database.
    assert!(bank.store.list_customers().await.unwrap().is_empty());
}

#[tokio::test]
async fn one_address_is_limited_whatever_the_usernames() {
    let bank = Bank::new("failed_logins_per_address = 3").await;
    bank.add("ann", false).await;
    let node = bank.node();
    for name in ["x1", "x2", "x3"] {
        assert_eq!(node.sign_in(name, "guess", None, peer(9)).await, Err(SignInRefused::WrongCredentials));
    }
    assert!(matches!(node.sign_in("ann", PASSWORD, None, peer(9)).await, Err(SignInRefused::Throttled { .. })));
    assert!(node.sign_in("ann", PASSWORD, None, peer(10)).await.is_ok(), "another address is not limited");
}

#[tokio::test]
async fn one_time_codes_are_required_checked_and_used_once() {
    let bank = Bank::new("max_failed_logins = 3").await;
    let (id, secret) = bank.add("tom", true).await;
    let secret = secret.expect("a secret was made");
    let node = bank.node();
    let step = TotpSecret::step_at(NOW);
    // Right password, no code: asked for it, not counted as a failure.
    for _ in 0..5 {
        assert_eq!(node.sign_in("tom", PASSWORD, None, peer(1)).await, Err(SignInRefused::OtpMissingOrWrong));
    }
    assert_eq!(node.sign_in("tom", PASSWORD, Some("000000x"), peer(1)).await, Err(SignInRefused::OtpMissingOrWrong));
    assert_eq!(node.sign_in("tom", PASSWORD, Some(&secret.code(step)), peer(1)).await.unwrap().id, id);
    // The same code again (a replayed form, another node) is refused.
    assert_eq!(
        bank.node().sign_in("tom", PASSWORD, Some(&secret.code(step)), peer(1)).await,
        Err(SignInRefused::OtpMissingOrWrong)
    );
    // A code of the next step (a clock a little ahead) is accepted once.
    assert!(node.sign_in("tom", PASSWORD, Some(&secret.code(step + 1)), peer(1)).await.is_ok());
    // A wrong password with a right code is a wrong password.
    assert_eq!(
        node.sign_in("tom", "wrong", Some(&secret.code(step + 1)), peer(1)).await,
        Err(SignInRefused::WrongCredentials)
    );
    // Wrong codes count towards the lock (one wrong password already counted).
    assert_eq!(node.sign_in("tom", PASSWORD, Some("123456"), peer(1)).await, Err(SignInRefused::OtpMissingOrWrong));
    assert!(matches!(node.sign_in("tom", PASSWORD, Some("654321"), peer(1)).await, Err(SignInRefused::Locked { .. })));
}

#[tokio::test]
async fn the_built_in_account_lookup_reads_the_store() {
    let bank = Bank::new("").await;
    let (id, _) = bank.add("ann", false).await;
    let account = NewAccount {
        account_id: "ann-1".into(),
        name: "Current".into(),
        scheme: "UK.OBIE.IBAN".into(),
        identification: "GB29NWBK60161331926819".into(),
        secondary_identification: Some("roll 7".into()),
        currency: "EUR".into(),
    };
    keyfort::customers::manage::add_account(bank.store.as_ref(), "ann", &account, NOW).await.unwrap();
    let accounts = StoreAccountLookup::new(bank.store.clone()).accounts(&id).await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(
        (accounts[0].id.as_str(), accounts[0].scheme.as_str(), accounts[0].currency.as_str()),
        ("ann-1", "UK.OBIE.IBAN", "EUR")
    );
    assert_eq!(accounts[0].secondary_identification.as_deref(), Some("roll 7"));
    assert!(StoreAccountLookup::new(bank.store.clone()).accounts("nobody").await.unwrap().is_empty());
}

// ----- The command line -----

fn keyfort(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyfort"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keyfort runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "keyfort failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn fails(output: &Output, needle: &str) {
    assert!(!output.status.success(), "should have failed: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(needle), "stderr should mention {needle:?}: {stderr}");
}

fn config_file(dir: &Path, port: u16) -> String {
    let path = dir.join("keyfort.toml");
    std::fs::write(
        &path,
        format!(
            "[development]\nallow_unsafe_registration = true\n[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://localhost:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[oauth.dcr]\nssa_jkws = \"https://unused.example/x.jwks\"\n\n[customers]\ntotp_issuer = \"Acme Bank\"\n\n[log]\nlevel = \"warn\"\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn customers_are_added_and_listed_before_the_first_serve() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), crate::crash::free_port());
    assert!(!dir.path().join("data").exists(), "no database yet");

    let added =
        ok(&keyfort(&["customers", "add", "--config", &config, "ann", "--password-stdin"], Some("correct horse\n")));
    assert!(added.contains("customer \"ann\" added"), "{added}");
    assert!(!added.contains("otpauth") && !added.contains("correct horse"), "{added}");

    let with_totp = ok(&keyfort(
        &["customers", "add", "--config", &config, "tom", "--password-stdin", "--totp"],
        Some("battery staple\n"),
    ));
    let secret = with_totp
        .lines()
        .find_map(|l| l.strip_prefix("one-time code secret (base32): "))
        .unwrap_or_else(|| panic!("the secret is printed: {with_totp}"))
        .to_owned();
    let uri = with_totp.lines().find(|l| l.starts_with("otpauth://")).expect("the URI is printed");
    assert_eq!(secret.len(), 32);
    assert!(uri.starts_with("otpauth://totp/Acme%20Bank:tom?secret="), "{uri}");
    assert!(uri.contains(&format!("secret={secret}&")) && uri.contains("issuer=Acme%20Bank"), "{uri}");

    // The secret printed is the one stored: a code from it signs tom in.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = Config::load(Path::new(&config)).unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.storage.url).await.unwrap());
        let clock = Arc::new(keyfort_core::clock::SystemClock);
        let node = StoreCustomerDirectory::new(store, clock, config.customers.clone());
        let now = keyfort_core::clock::Clock::now(&keyfort_core::clock::SystemClock);
        let code = TotpSecret::from_base32(&secret).unwrap().code(TotpSecret::step_at(now));
        assert_eq!(node.sign_in("tom", "battery staple", Some(&code), peer(1)).await.unwrap().username, "tom");
        assert_eq!(node.sign_in("ann", "correct horse", None, peer(1)).await.unwrap().username, "ann");
    });

    let account = |id: &str, number: &str, extra: &[&str]| {
        let mut args = vec![
            "customers",
            "add-account",
            "--config",
            &config,
            "ann",
            "--account-id",
            id,
            "--name",
            "Current account",
            "--scheme",
            "UK.OBIE.SortCodeAccountNumber",
            "--identification",
            number,
            "--currency",
            "GBP",
        ];
        args.extend_from_slice(extra);
        keyfort(&args, None)
    };
    assert!(ok(&account("ann-1", "60304560123456", &[])).contains("account \"ann-1\" added"));
    ok(&account("ann-2", "60304587654321", &["--secondary-identification", "ROLL-9"]));
    fails(&account("ann-1", "60304560123456", &[]), "already exists");
    fails(&account("ann-3", "1234", &[]), "14 digits");

    let list = ok(&keyfort(&["customers", "list", "--config", &config], None));
    let ann = list.lines().find(|l| l.starts_with("ann ")).expect(&list);
    assert!(ann.contains(" off ") && ann.contains("ann-1"), "{list}");
    assert!(list.contains("ann-2") && list.contains("(ROLL-9)"), "{list}");
    let tom = list.lines().find(|l| l.starts_with("tom ")).expect(&list);
    assert!(tom.contains(" on "), "{list}");
    for secret_text in [secret.as_str(), "argon2", "correct horse", "battery"] {
        assert!(!list.contains(secret_text), "list shows no secret: {list}");
    }

    fails(
        &keyfort(&["customers", "add", "--config", &config, "ann", "--password-stdin"], Some("another password\n")),
        "already exists",
    );
    fails(
        &keyfort(&["customers", "add", "--config", &config, "sam", "--password-stdin"], Some("short\n")),
        "at least 8",
    );
    fails(
        &keyfort(&["customers", "add", "--config", &config, " sam", "--password-stdin"], Some("long enough\n")),
        "username",
    );
    fails(
        &keyfort(
            &[
                "customers",
                "add-account",
                "--config",
                &config,
                "nobody",
                "--account-id",
                "x",
                "--name",
                "n",
                "--scheme",
                "UK.OBIE.IBAN",
                "--identification",
                "GB29NWBK60161331926819",
                "--currency",
                "GBP",
            ],
            None,
        ),
        "no customer named",
    );
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn customers_are_added_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let port = crate::crash::free_port();
    let config = config_file(dir.path(), port);
    let server = Child(
        Command::new(env!("CARGO_BIN_EXE_keyfort"))
            .args(["serve", "--config", &config])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(up, "the server started");
    let added =
        ok(&keyfort(&["customers", "add", "--config", &config, "ann", "--password-stdin"], Some("correct horse\n")));
    assert!(added.contains("added"), "{added}");
    assert!(ok(&keyfort(&["customers", "list", "--config", &config], None)).contains("ann "));
    drop(server);
}
