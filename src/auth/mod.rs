//! auth: accounts, password hashes (Argon2id), TOTP (RFC 6238) with one-time recovery codes,
//! server-side sessions, login lockout, and the audit log. No HTTP types: the web layer passes
//! in the client IP, cookie values and form fields, and turns `AuthError` into responses.
use crate::store::{AuditEntry, Store, StoreError, UserRow};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use std::sync::OnceLock;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Secret, TOTP};

/// Failed sign-ins in a row that lock an account, and for how long.
pub const MAX_FAILURES: i64 = 5;
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// Failed sign-ins from one address within `IP_WINDOW_MS` that lock the address.
pub const IP_MAX_FAILURES: i64 = 20;
pub const IP_WINDOW_MS: i64 = 15 * 60 * 1000;
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
pub const SETUP_MS: i64 = 24 * 3600 * 1000;
pub const MIN_PASSWORD_CHARS: usize = 12;
const TOTP_STEP: i64 = 30;
const RECOVERY_CODES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (admin, operator, viewer)")),
        }
    }
    /// Admins and operators change what the public sees: a password alone is not enough.
    pub fn needs_totp(self) -> bool {
        self >= Role::Operator
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub role: Role,
}

/// A signed-in request's user and the session's CSRF token. For an API token the role is
/// capped by the token's scope and there is no CSRF token (the header is not ambient).
#[derive(Debug, Clone)]
pub struct Authed {
    pub user: User,
    pub csrf: String,
    pub token: Option<(String, TokenScope)>,
}

/// What an API token may do: `read` GETs the read APIs (search, timeseries, export); `write`
/// also uses the operator API `/api/v1/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    Read,
    Write,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Read => "read",
            TokenScope::Write => "write",
        }
    }
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "read" => Ok(TokenScope::Read),
            "write" => Ok(TokenScope::Write),
            other => Err(format!("{other:?} is not a token scope (read, write)")),
        }
    }
    /// The most a token of this scope can do, whatever its owner's role.
    pub fn max_role(self) -> Role {
        match self {
            TokenScope::Read => Role::Viewer,
            TokenScope::Write => Role::Operator,
        }
    }
}

pub const TOKEN_PREFIX: &str = "kz_";

/// Creates an API token for `user`; returns the token, shown once (only its hash is kept).
pub async fn create_token(
    store: &Store,
    name: &str,
    user: &str,
    scope: TokenScope,
    now: DateTime<Utc>,
) -> Result<String> {
    check_name(name)?;
    let token = format!("{TOKEN_PREFIX}{}", random_token());
    store
        .insert_api_token(
            name,
            user,
            scope.as_str(),
            &sha256_hex(&token),
            now.timestamp_millis(),
        )
        .await?;
    Ok(token)
}

/// The identity behind a bearer token, with its role capped by the scope.
pub async fn token_auth(store: &Store, token: &str, now: DateTime<Utc>) -> Result<Option<Authed>> {
    let Some((row, scope, name)) = store
        .api_token(&sha256_hex(token.trim()), now.timestamp_millis())
        .await?
    else {
        return Ok(None);
    };
    let scope = TokenScope::parse(&scope).map_err(StoreError::Corrupt)?;
    let mut user = user_of(&row)?;
    user.role = user.role.min(scope.max_role());
    Ok(Some(Authed {
        user,
        csrf: String::new(),
        token: Some((name, scope)),
    }))
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the name, password or code is wrong")]
    BadCredentials,
    #[error(
        "this account is locked after too many failed sign-ins until {0}; an admin can unlock it"
    )]
    Locked(String),
    #[error("too many failed sign-ins from this address; try again after {0}")]
    IpLocked(String),
    #[error("this setup link is unknown, used or expired; ask an admin for a new one")]
    SetupInvalid,
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub type Result<T> = std::result::Result<T, AuthError>;

fn user_of(row: &UserRow) -> Result<User> {
    Ok(User {
        id: row.id,
        name: row.name.clone(),
        role: Role::parse(&row.role).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn jst(ms: i64) -> String {
    crate::status::render::jst(ms)
}

/// 32 random bytes, URL-safe base64: session ids, CSRF and setup tokens.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(s.as_bytes()))
}

/// Constant-time equality for secrets.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

pub fn hash_password(pw: &str) -> Result<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify_password(hash: &str, pw: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A hash to verify against when the user does not exist, so timing does not tell.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("not a real password").unwrap_or_default())
}

pub fn new_totp_secret() -> String {
    let mut b = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut b);
    Secret::Raw(b.to_vec()).to_encoded().to_string()
}

fn totp(secret_b32: &str, account: &str) -> Result<TOTP> {
    let bytes = Secret::Encoded(secret_b32.to_string())
        .to_bytes()
        .map_err(|e| AuthError::Invalid(format!("TOTP secret: {e:?}")))?;
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        TOTP_STEP as u64,
        bytes,
        Some("kizashi".into()),
        account.to_string(),
    )
    .map_err(|e| AuthError::Invalid(format!("TOTP: {e}")))
}

/// The code for `unix_secs` (authenticator apps compute the same).
pub fn totp_code(secret_b32: &str, unix_secs: i64) -> Result<String> {
    Ok(totp(secret_b32, "x")?.generate(unix_secs.max(0) as u64))
}

/// The time step whose code equals `code`, allowing one step of clock skew either way.
fn totp_step(secret_b32: &str, code: &str, now: DateTime<Utc>) -> Result<Option<i64>> {
    let t = totp(secret_b32, "x")?;
    let now_step = now.timestamp() / TOTP_STEP;
    let mut found = None;
    for step in [now_step - 1, now_step, now_step + 1] {
        let expected = t.generate((step * TOTP_STEP).max(0) as u64);
        if ct_eq(&expected, code) {
            found = Some(step);
        }
    }
    Ok(found)
}

pub fn otpauth_url(secret_b32: &str, account: &str) -> Result<String> {
    Ok(totp(secret_b32, account)?.get_url())
}

/// The otpauth URL as an SVG QR code in a data: URL, for an <img>.
pub fn qr_data_url(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| AuthError::Invalid(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(svg)
    ))
}

fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let s: String = b
        .iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect();
    format!("{}-{}-{}", &s[..4], &s[4..8], &s[8..])
}

fn normalize_recovery(code: &str) -> String {
    code.trim().to_ascii_lowercase()
}

fn check_name(name: &str) -> Result<()> {
    crate::domain::Slug::parse(name).map_err(|e| AuthError::Invalid(format!("name: {e}")))?;
    Ok(())
}

/// Creates a user and returns the one-time setup token (valid `SETUP_MS`).
pub async fn create_user(
    store: &Store,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> Result<String> {
    check_name(name)?;
    let token = random_token();
    let now = now.timestamp_millis();
    store
        .insert_user(
            name,
            role.as_str(),
            &sha256_hex(&token),
            now + SETUP_MS,
            &new_totp_secret(),
            now,
        )
        .await?;
    Ok(token)
}

/// Resets a user's password and 2FA (lost device, suspected compromise): every session and
/// API token of the user ends now, and the returned one-time link sets new ones.
pub async fn reset_user(store: &Store, name: &str, now: DateTime<Utc>) -> Result<String> {
    let token = random_token();
    let now = now.timestamp_millis();
    store
        .reset_user(
            name,
            &sha256_hex(&token),
            now + SETUP_MS,
            &new_totp_secret(),
            now,
        )
        .await?;
    Ok(token)
}

/// What the setup page shows: the user, and for 2FA roles the TOTP secret and its QR code.
pub struct SetupInfo {
    pub user: User,
    pub totp_secret: Option<String>,
    pub otpauth_url: Option<String>,
}

pub async fn setup_info(store: &Store, token: &str, now: DateTime<Utc>) -> Result<SetupInfo> {
    let row = store
        .user_by_setup_token(&sha256_hex(token))
        .await?
        .filter(|u| {
            u.setup_expires_at
                .is_some_and(|e| e > now.timestamp_millis())
        })
        .ok_or(AuthError::SetupInvalid)?;
    let user = user_of(&row)?;
    let secret = row
        .totp_pending_secret
        .clone()
        .filter(|_| user.role.needs_totp());
    let url = secret
        .as_deref()
        .map(|s| otpauth_url(s, &user.name))
        .transpose()?;
    Ok(SetupInfo {
        user,
        totp_secret: secret,
        otpauth_url: url,
    })
}

/// Sets the password (and, for 2FA roles, confirms the TOTP code); returns the recovery codes,
/// shown once. Every existing session of the user ends.
pub async fn finish_setup(
    store: &Store,
    token: &str,
    password: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let info = setup_info(store, token, now).await?;
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > 1024 {
        return Err(AuthError::Invalid(format!(
            "the password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    let mut codes = Vec::new();
    let mut step = None;
    if let Some(secret) = &info.totp_secret {
        step = totp_step(secret, code.trim(), now)?;
        if step.is_none() {
            return Err(AuthError::Invalid(
                "the authenticator code does not match; check the device's clock and try the next code".into(),
            ));
        }
        codes = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    }
    let hashes: Vec<String> = codes.iter().map(|c| sha256_hex(c)).collect();
    let hash = hash_password(password)?;
    store
        .finish_setup(
            info.user.id,
            &sha256_hex(token),
            &crate::store::SetupCompletion {
                password_hash: &hash,
                totp_secret: info.totp_secret.as_deref(),
                totp_step: step,
                recovery_hashes: &hashes,
            },
            now.timestamp_millis(),
        )
        .await?;
    Ok(codes)
}

/// A new session: the cookie value (only its hash is stored) and its CSRF token.
pub struct NewSession {
    pub id: String,
    pub csrf: String,
    pub user: User,
}

/// Signs in with name, password and (for 2FA accounts) a TOTP or recovery code. Failures
/// count per account and per address; a TOTP code is accepted once only.
pub async fn login(
    store: &Store,
    name: &str,
    password: &str,
    code: &str,
    ip: &str,
    now: DateTime<Utc>,
) -> Result<NewSession> {
    let now_ms = now.timestamp_millis();
    if let Some(until) = store.ip_locked_until(ip).await?.filter(|u| *u > now_ms) {
        return Err(AuthError::IpLocked(jst(until)));
    }
    let row = store.user_by_name(name.trim()).await?;
    let Some(row) = row else {
        verify_password(dummy_hash(), password);
        fail_ip(store, ip, now_ms).await?;
        return Err(AuthError::BadCredentials);
    };
    if let Some(until) = row.locked_until.filter(|u| *u > now_ms) {
        return Err(AuthError::Locked(jst(until)));
    }
    let password_ok = row
        .password_hash
        .as_deref()
        .is_some_and(|h| verify_password(h, password));
    let second_ok = if !password_ok {
        false
    } else if let Some(secret) = &row.totp_secret {
        let code = code.trim();
        if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) {
            match totp_step(secret, code, now)? {
                Some(step) => store.accept_totp_step(row.id, step).await?,
                None => false,
            }
        } else {
            !code.is_empty()
                && store
                    .use_recovery_code(row.id, &sha256_hex(&normalize_recovery(code)), now_ms)
                    .await?
        }
    } else {
        // A 2FA role without an enrolled secret cannot sign in (setup not finished).
        !Role::parse(&row.role).map(Role::needs_totp).unwrap_or(true)
    };
    if !(password_ok && second_ok) {
        fail_ip(store, ip, now_ms).await?;
        if let Some(until) = store
            .user_login_failed(row.id, now_ms, MAX_FAILURES, LOCK_MS)
            .await?
        {
            return Err(AuthError::Locked(jst(until)));
        }
        return Err(AuthError::BadCredentials);
    }
    store.user_login_succeeded(row.id).await?;
    let id = random_token();
    let csrf = random_token();
    store
        .create_session(
            &sha256_hex(&id),
            row.id,
            &csrf,
            ip,
            now_ms,
            now_ms + SESSION_MS,
        )
        .await?;
    Ok(NewSession {
        id,
        csrf,
        user: user_of(&row)?,
    })
}

async fn fail_ip(store: &Store, ip: &str, now: i64) -> Result<()> {
    store
        .ip_login_failed(ip, now, IP_WINDOW_MS, IP_MAX_FAILURES, LOCK_MS)
        .await?;
    Ok(())
}

pub async fn session(store: &Store, id: &str, now: DateTime<Utc>) -> Result<Option<Authed>> {
    match store
        .session(&sha256_hex(id), now.timestamp_millis())
        .await?
    {
        Some((row, csrf)) => Ok(Some(Authed {
            user: user_of(&row)?,
            csrf,
            token: None,
        })),
        None => Ok(None),
    }
}

pub async fn logout(store: &Store, id: &str) -> Result<()> {
    Ok(store.delete_session(&sha256_hex(id)).await?)
}

pub async fn logout_everywhere(store: &Store, user_id: i64) -> Result<u64> {
    Ok(store.delete_user_sessions(user_id).await?)
}

/// Appends to the audit log; a failure to write it is logged loudly, never hidden.
pub async fn audit(store: &Store, e: AuditEntry) {
    if let Err(err) = store.audit(&e).await {
        tracing::error!(error = %err, action = %e.action, "audit log write failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "correct horse battery"));
        assert!(!verify_password(&h, "correct horse batterx"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn totp_matches_rfc6238_and_allows_one_step_of_skew() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits) → 287082 with 6 digits.
        let secret = Secret::Raw(b"12345678901234567890".to_vec())
            .to_encoded()
            .to_string();
        assert_eq!(totp_code(&secret, 59).unwrap(), "287082");
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        assert_eq!(totp_step(&secret, "287082", at(59)).unwrap(), Some(1));
        assert_eq!(totp_step(&secret, "287082", at(89)).unwrap(), Some(1));
        assert_eq!(totp_step(&secret, "287082", at(150)).unwrap(), None);
        assert_eq!(totp_step(&secret, "000000", at(59)).unwrap(), None);
    }

    #[test]
    fn constant_time_eq_is_plain_eq() {
        assert!(ct_eq("abc", "abc"));
        assert!(!ct_eq("abc", "abd"));
        assert!(!ct_eq("abc", "abcd"));
    }
}
