//! The customer's pages: server-rendered HTML that works without JavaScript, built from
//! templates with autoescaping, branded from configuration.
//!
//! The authorization service decides what happens next and hands this module a small typed
//! view (the Keycloak and node-oidc-provider lesson): templates only render and post back;
//! they never read protocol parameters. A bank restyles the pages by putting templates of
//! the same names in `[branding] template_dir`, file by file; every sentence a customer
//! reads is in the templates, so translating them is editing them.

use std::path::Path;

use minijinja::{context, Environment, Value};
use serde::Serialize;

use crate::config::BrandingConfig;

/// The templates, by name, with their built-in text.
const TEMPLATES: [(&str, &str); 6] = [
    ("base.html", include_str!("../../templates/base.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("consent.html", include_str!("../../templates/consent.html")),
    ("customer-sign-in.html", include_str!("../../templates/customer-sign-in.html")),
    ("customer-access.html", include_str!("../../templates/customer-access.html")),
];

const STYLESHEET: &str = include_str!("../../templates/keyfort.css");

/// The largest logo served (it is held in memory).
const MAX_LOGO_BYTES: u64 = 512 * 1024;

/// The third party a customer is dealing with.
#[derive(Debug, Clone, Serialize)]
pub struct TppView {
    /// The client's registered `client_name`.
    pub name: String,
    /// The organisation behind it, from its software statement.
    pub organisation: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub message: String,
    pub code: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoginView {
    pub tpp: TppView,
    /// What the TPP is asking for, in a few words ("access to your account information").
    pub purpose: String,
    pub csrf_token: String,
    /// Why the last attempt failed.
    pub message: Option<String>,
    /// The name typed last time, kept so the customer need not type it again.
    pub username: String,
}

/// One labelled fact of a consent (an amount, a date).
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    pub label: String,
    pub value: String,
}

/// How the consent page lets the customer pick accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountChoice {
    /// Checkboxes: any number of accounts (account information).
    Several,
    /// Radio buttons: one debtor account (a payment without a named debtor account).
    One,
    /// No choice: the consent names its account.
    Fixed,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    /// Scheme and identification, currency, in words.
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsentView {
    pub tpp: TppView,
    pub purpose: String,
    /// The signed-in customer, as they know themselves (their username).
    pub customer: String,
    pub heading: String,
    /// What is asked, one sentence each (permissions in plain words).
    pub lines: Vec<String>,
    pub facts: Vec<Fact>,
    pub choice: AccountChoice,
    pub accounts: Vec<AccountView>,
    pub csrf_token: String,
    /// Why the last answer could not be taken (no account chosen).
    pub message: Option<String>,
}

/// The sign-in page of the customer's own pages.
#[derive(Debug, Clone, Serialize)]
pub struct CustomerSignInView {
    pub message: Option<String>,
    /// The name typed last time.
    pub username: String,
}

/// One TPP's access, as the customer's page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AccessItem {
    pub consent_id: String,
    pub tpp: TppView,
    pub heading: String,
    pub lines: Vec<String>,
    pub facts: Vec<Fact>,
    /// The accounts the customer chose, in words.
    pub accounts: Vec<AccountView>,
}

/// The customer's page of the TPPs they have authorised.
#[derive(Debug, Clone, Serialize)]
pub struct AccessView {
    pub customer: String,
    pub csrf_token: String,
    pub items: Vec<AccessItem>,
    /// What the last action did ("You withdrew ...'s access").
    pub notice: Option<String>,
}

/// The bank's identity on every page.
#[derive(Debug, Clone, Serialize)]
struct BankView {
    name: String,
    has_logo: bool,
}

pub struct Pages {
    templates: Environment<'static>,
    bank: BankView,
    stylesheet: String,
    logo: Option<(Vec<u8>, &'static str)>,
}

impl Pages {
    /// Compiles every template (built-in or overridden) and reads the logo, so that a
    /// broken template or logo stops the start-up rather than a customer's sign-in.
    pub fn new(branding: &BrandingConfig) -> Result<Self, BrandingProblem> {
        let mut templates = Environment::new();
        if let Some(dir) = &branding.template_dir {
            if !dir.is_dir() {
                return Err(BrandingProblem::template_dir(format!("{} is not a directory", dir.display())));
            }
        }
        for (name, built_in) in TEMPLATES {
            let source = match &branding.template_dir {
                Some(dir) if dir.join(name).is_file() => std::fs::read_to_string(dir.join(name))
                    .map_err(|e| BrandingProblem::template_dir(format!("{}: {e}", dir.join(name).display())))?,
                _ => built_in.to_owned(),
            };
            templates
                .add_template_owned(name.to_owned(), source)
                .map_err(|e| BrandingProblem::template_dir(format!("{name} does not compile: {e}")))?;
        }
        let logo = branding.logo_file.as_deref().map(read_logo).transpose()?;
        let colour = branding.primary_colour.css();
        let stylesheet = format!(
            ":root {{\n  --primary: {colour};\n  --on-primary: #ffffff;\n  --primary-text: {colour};\n  --focus: {colour};\n  \
             --text: #1f2933;\n  --muted: #52606d;\n  --page: #f5f7fa;\n  --card: #ffffff;\n  --border: #d9e2ec;\n  \
             --input-border: #7b8794;\n  --danger: #b42318;\n  --danger-bg: #fef3f2;\n  --ok: #05603a;\n  --ok-bg: #ecfdf3;\n}}\n{STYLESHEET}"
        );
        Ok(Self {
            templates,
            bank: BankView { name: branding.bank_name.clone(), has_logo: logo.is_some() },
            stylesheet,
            logo,
        })
    }

    pub fn error(&self, view: &ErrorView) -> anyhow::Result<String> {
        self.render("error.html", Value::from_serialize(view))
    }

    pub fn login(&self, view: &LoginView) -> anyhow::Result<String> {
        self.render("login.html", Value::from_serialize(view))
    }

    pub fn consent(&self, view: &ConsentView) -> anyhow::Result<String> {
        self.render("consent.html", Value::from_serialize(view))
    }

    pub fn customer_sign_in(&self, view: &CustomerSignInView) -> anyhow::Result<String> {
        self.render("customer-sign-in.html", Value::from_serialize(view))
    }

    pub fn customer_access(&self, view: &AccessView) -> anyhow::Result<String> {
        self.render("customer-access.html", Value::from_serialize(view))
    }

    pub fn stylesheet(&self) -> &str {
        &self.stylesheet
    }

    /// The logo's bytes and content type, if one is configured.
    pub fn logo(&self) -> Option<(&[u8], &'static str)> {
        self.logo.as_ref().map(|(bytes, kind)| (bytes.as_slice(), *kind))
    }

    fn render(&self, name: &str, view: Value) -> anyhow::Result<String> {
        let template = self.templates.get_template(name)?;
        let context = context! { bank => &self.bank, lang => "en", ..view };
        Ok(template.render(context)?)
    }
}

/// A template or logo that cannot be used, found when the pages are built (at start-up and
/// by `keyfort check-config`).
#[derive(Debug)]
pub struct BrandingProblem {
    /// The `[branding]` key at fault.
    pub key: &'static str,
    pub message: String,
}

impl BrandingProblem {
    fn template_dir(message: String) -> Self {
        Self { key: "template_dir", message }
    }

    fn logo_file(message: String) -> Self {
        Self { key: "logo_file", message }
    }
}

impl std::fmt::Display for BrandingProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[branding] {}: {}", self.key, self.message)
    }
}

impl std::error::Error for BrandingProblem {}

fn read_logo(path: &Path) -> Result<(Vec<u8>, &'static str), BrandingProblem> {
    let unreadable = |e: std::io::Error| BrandingProblem::logo_file(format!("{}: {e}", path.display()));
    let size = std::fs::metadata(path).map_err(unreadable)?.len();
    if size > MAX_LOGO_BYTES {
        return Err(BrandingProblem::logo_file(format!("{} is larger than {MAX_LOGO_BYTES} bytes", path.display())));
    }
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let kind = match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg") => "image/svg+xml",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "image/png",
    };
    Ok((bytes, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Colour;

    fn branding(template_dir: Option<std::path::PathBuf>) -> BrandingConfig {
        BrandingConfig {
            bank_name: "Example & Sons Bank".into(),
            logo_file: None,
            primary_colour: Colour::parse("#123456").unwrap(),
            template_dir,
        }
    }

    fn tpp() -> TppView {
        TppView { name: "<script>alert(1)</script> Budget".into(), organisation: Some("Acme Ltd".into()) }
    }

    #[test]
    fn pages_escape_what_they_show() {
        let pages = Pages::new(&branding(None)).unwrap();
        let html = pages
            .login(&LoginView {
                tpp: tpp(),
                purpose: "access to your account information".into(),
                csrf_token: "tok\"en".into(),
                message: Some("The username or password is wrong.".into()),
                username: "ann\"><b>".into(),
            })
            .unwrap();
        assert!(html.contains("&lt;script&gt;alert(1)"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(!html.contains("ann\"><b>"));
        assert!(html.contains("Example &amp; Sons Bank"));
        assert!(
            html.contains("name=\"username\"") && html.contains("name=\"password\"") && html.contains("name=\"otp\"")
        );
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("role=\"alert\""));
        assert!(pages.stylesheet().contains("--primary: #123456"));
    }

    #[test]
    fn the_consent_page_offers_the_right_controls() {
        let pages = Pages::new(&branding(None)).unwrap();
        let mut view = ConsentView {
            tpp: tpp(),
            purpose: "access to your account information".into(),
            customer: "ann".into(),
            heading: "What it will see".into(),
            lines: vec!["See your account balances".into()],
            facts: vec![Fact { label: "Until".into(), value: "31 December 2027".into() }],
            choice: AccountChoice::Several,
            accounts: vec![
                AccountView { id: "acc-1".into(), name: "Current".into(), detail: "60-30-45 60123456 · GBP".into() },
                AccountView { id: "acc-2".into(), name: "Savings".into(), detail: "60-30-45 60999999 · GBP".into() },
            ],
            csrf_token: "t".into(),
            message: None,
        };
        let several = pages.consent(&view).unwrap();
        assert_eq!(several.matches("type=\"checkbox\"").count(), 2, "{several}");
        assert!(
            several.contains("name=\"decision\" value=\"approve\"")
                && several.contains("name=\"decision\" value=\"deny\"")
        );
        view.choice = AccountChoice::One;
        let one = pages.consent(&view).unwrap();
        assert_eq!(one.matches("type=\"radio\"").count(), 2);
        assert_eq!(one.matches(" checked").count(), 1, "one account is preselected");
        view.choice = AccountChoice::Fixed;
        let fixed = pages.consent(&view).unwrap();
        assert!(!fixed.contains("name=\"account\""), "a named account is not a choice");
    }

    #[test]
    fn a_template_directory_overrides_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("error.html"), "<p>{{ bank.name }}: {{ message }}</p>").unwrap();
        let pages = Pages::new(&branding(Some(dir.path().to_path_buf()))).unwrap();
        let html = pages.error(&ErrorView { message: "<gone>".into(), code: "invalid_request".into() }).unwrap();
        assert_eq!(html, "<p>Example &amp; Sons Bank: &lt;gone&gt;</p>");
        // The others are still the built-in ones.
        assert!(pages
            .login(&LoginView {
                tpp: tpp(),
                purpose: "p".into(),
                csrf_token: "t".into(),
                message: None,
                username: String::new()
            })
            .unwrap()
            .contains("<form"));
        std::fs::write(dir.path().join("login.html"), "{% if %}").unwrap();
        assert!(Pages::new(&branding(Some(dir.path().to_path_buf()))).is_err(), "a broken template stops the start");
    }
}
