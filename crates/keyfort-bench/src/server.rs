//! A Keyfort server for the benchmark, in its own process: an offline sandbox directory made
//! with the `keyfort sandbox` commands, a fresh SQLite database, and `keyfort serve
//! --sandbox DIR --dev`, so that what is measured is the binary a bank runs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::{tls_config, Target};

/// A running `keyfort serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct LocalKeyfort {
    child: Child,
    pub url: String,
    pub sandbox: PathBuf,
    pub cacert: PathBuf,
    pub log: PathBuf,
}

/// A port free on 127.0.0.1 now. Another process could take it before the server binds it;
/// the server would then fail to start, and the error says so.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run_keyfort(bin: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(bin).args(args).output().with_context(|| format!("running {}", bin.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "{} {} failed: {}{}",
            bin.display(),
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The configuration the benchmark runs Keyfort with: the defaults, trusting the sandbox,
/// except that one software may register many times (every `register` request is from the
/// benchmark's one software).
pub fn config_text(port: u16, data_dir: &Path, ca_bundle: &Path, directory_jwks: &str, log_level: &str) -> String {
    format!(
        r#"# Written by keyfort-bench.
[server]
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{port}"
data_dir = "{data}"

[server.tls]
client_ca_file = "{bundle}"
client_auth = "optional"

[oauth.dcr]
ssa_jkws = "{jwks}"
software_environment = "sandbox"
one_registration_per_software = false

[http_client]
allow_insecure_loopback = true

[log]
level = "{log_level}"
"#,
        data = data_dir.display(),
        bundle = ca_bundle.display(),
        jwks = directory_jwks,
    )
}

impl LocalKeyfort {
    /// Creates a sandbox and configuration under `dir` (which must not hold one yet) and
    /// starts `bin serve` on a free loopback port.
    pub fn start(bin: &Path, dir: &Path, log_level: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let sandbox = dir.join("sandbox");
        let keystore_port = free_port()?;
        let port = free_port()?;
        let keystore_url = format!("http://127.0.0.1:{keystore_port}");
        let sandbox_arg = sandbox.to_str().context("the work directory is not UTF-8")?;
        run_keyfort(bin, &["sandbox", "init", sandbox_arg, "--keystore-url", &keystore_url])?;
        run_keyfort(
            bin,
            &[
                "sandbox",
                "add-software",
                sandbox_arg,
                "--org",
                "Bench TPP Ltd",
                "--roles",
                "AISP,PISP,CBPII",
                "--redirect-uri",
                "https://tpp.example/callback",
                "--client-name",
                "Bench TPP App",
            ],
        )?;
        let data = dir.join("data");
        let config = dir.join("keyfort.toml");
        std::fs::write(
            &config,
            config_text(
                port,
                &data,
                &sandbox.join("ca/bundle.pem"),
                &format!("{keystore_url}/openbanking.jwks"),
                log_level,
            ),
        )?;
        let log = dir.join("server.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--sandbox")
            .arg(&sandbox)
            .arg("--dev")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        Ok(Self {
            child,
            url: format!("https://localhost:{port}"),
            sandbox,
            cacert: data.join("dev-tls/cert.pem"),
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the server answers `/healthz` over TLS.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!("keyfort serve exited with {status}:\n{}", self.log_tail());
            }
            if self.cacert.exists() {
                if let Ok(tls) = tls_config(&self.cacert, None) {
                    let target = Target::new(&self.url, tls)?;
                    let request = hyper::Request::get("/healthz")
                        .header("host", target.host_header())
                        .body(http_body_util::Full::default())?;
                    if let Ok((200, _)) = target.once(request).await {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!("keyfort serve did not answer /healthz within {limit:?}:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the server: SIGTERM (it finishes in-flight requests), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: signals only the child this value started, by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalKeyfort {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_listens_on_loopback_and_allows_repeated_registration() {
        let text = config_text(
            9446,
            Path::new("/tmp/d"),
            Path::new("/tmp/s/ca/bundle.pem"),
            "http://127.0.0.1:1/openbanking.jwks",
            "warn",
        );
        let lines: Vec<&str> = text.lines().collect();
        let after = |section: &str, line: &str| {
            let start = lines.iter().position(|l| *l == section).unwrap_or_else(|| panic!("no {section}"));
            let end = lines[start + 1..].iter().position(|l| l.starts_with('[')).map_or(lines.len(), |i| start + 1 + i);
            lines[start..end].contains(&line)
        };
        assert!(after("[server]", "listen = \"127.0.0.1:9446\""));
        assert!(after("[server]", "public_url = \"https://localhost:9446\""));
        assert!(after("[server.tls]", "client_auth = \"optional\""));
        assert!(after("[oauth.dcr]", "one_registration_per_software = false"));
        assert!(after("[log]", "level = \"warn\""));
    }
}
