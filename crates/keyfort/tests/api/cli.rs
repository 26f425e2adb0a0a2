//! The command line as shipped: shell completions, the manual page, and what a command says
//! when it cannot ask for a password.

use std::process::{Command, Output, Stdio};

fn keyfort(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keyfort")).args(args).stdin(Stdio::null()).output().expect("keyfort runs")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn completions_cover_every_command_in_each_shell() {
    let bash = stdout(&keyfort(&["completions", "bash"]));
    assert!(bash.contains("complete -F _keyfort") || bash.contains("complete -o"), "{bash}");
    for word in ["import-wso2", "check-config", "--registration", "--software", "--publish-ahead"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let zsh = stdout(&keyfort(&["completions", "zsh"]));
    assert!(zsh.starts_with("#compdef keyfort"), "{}", &zsh[..zsh.len().min(200)]);
    let fish = stdout(&keyfort(&["completions", "fish"]));
    assert!(fish.contains("complete -c keyfort") && fish.contains("import-wso2"), "{fish}");
    let refused = keyfort(&["completions", "tcsh"]);
    assert_eq!(refused.status.code(), Some(2), "clap refuses an unknown shell");
}

#[test]
fn the_manual_page_documents_every_command_and_renders() {
    let page = stdout(&keyfort(&["man"]));
    assert!(page.contains(".TH keyfort 1"), "{}", &page[..page.len().min(300)]);
    let plain = page.replace("\\-", "-");
    for command in ["COMMAND: keyfort check-config", "COMMAND: keyfort import-wso2", "COMMAND: keyfort tpp register"] {
        assert!(plain.contains(command), "{command} is not in the manual page");
    }
    for flag in ["--software", "--password-stdin", "--publish-ahead", "--keep"] {
        assert!(plain.contains(flag), "{flag} is not in the manual page");
    }
    // man(1) itself formats it, when it is installed.
    if Command::new("man").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keyfort.1");
        std::fs::write(&file, &page).unwrap();
        let formatted = Command::new("man").arg("-l").arg(&file).env("MANWIDTH", "100").output().unwrap();
        let text = String::from_utf8_lossy(&formatted.stdout);
        assert!(formatted.status.success() && text.contains("SYNOPSIS"), "{text}");
    }
}

#[test]
fn add_user_without_a_terminal_points_at_password_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keyfort.toml");
    std::fs::write(
        &config,
        "[development]\nallow_unsafe_registration = true\n[server]\nlisten = \"127.0.0.1:9446\"\n\
         public_url = \"https://localhost:9446\"\n[oauth.dcr]\nssa_jkws = \"https://keystore.example/d.jwks\"\n",
    )
    .unwrap();
    // setsid: a new session has no controlling terminal, as under cron or in a container.
    let output = Command::new("setsid")
        .arg(env!("CARGO_BIN_EXE_keyfort"))
        .args(["admin", "add-user", "--config", config.to_str().unwrap(), "ops"])
        .stdin(Stdio::null())
        .output()
        .expect("setsid (util-linux) runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("no terminal") && stderr.contains("--password-stdin"), "{stderr}");
}
