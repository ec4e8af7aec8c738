//! Account tables: users, recovery codes, sessions, login failure counters and the audit log.
//! Policy (how many failures lock, for how long, which codes count) lives in `auth`; here each
//! rule that must hold across nodes is one conditional statement, so it holds under races too.
use super::{Result, Store, StoreError};
use sqlx::Row;

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub password_hash: Option<String>,
    pub totp_secret: Option<String>,
    pub totp_pending_secret: Option<String>,
    pub setup_expires_at: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

const USER_COLS: &str = "id, name, role, password_hash, totp_secret, totp_pending_secret, \
                         setup_expires_at, failed_logins, locked_until, created_at";

fn user(r: &sqlx::any::AnyRow) -> UserRow {
    UserRow {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        password_hash: r.get(3),
        totp_secret: r.get(4),
        totp_pending_secret: r.get(5),
        setup_expires_at: r.get(6),
        failed_logins: r.get(7),
        locked_until: r.get(8),
        created_at: r.get(9),
    }
}

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub ip: String,
    pub action: String,
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What finishing setup writes.
#[derive(Debug, Clone)]
pub struct SetupCompletion<'a> {
    pub password_hash: &'a str,
    pub totp_secret: Option<&'a str>,
    /// The TOTP step of the enrolment code, which counts as used.
    pub totp_step: Option<i64>,
    pub recovery_hashes: &'a [String],
}

impl Store {
    pub async fn count_users(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .get(0))
    }

    /// Creates a user who still has to set a password (and TOTP) through the setup link.
    pub async fn insert_user(
        &self,
        name: &str,
        role: &str,
        setup_token_hash: &str,
        setup_expires_at: i64,
        pending_secret: &str,
        now: i64,
    ) -> Result<i64> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            return Err(StoreError::Invalid(format!("user {name:?} already exists")));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO users (name, role, setup_token_hash, setup_expires_at,
                                totp_pending_secret, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
        )
        .bind(name)
        .bind(role)
        .bind(setup_token_hash)
        .bind(setup_expires_at)
        .bind(pending_secret)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        tx.commit().await?;
        Ok(id)
    }

    /// Starts setup again: a new link and TOTP secret; the password stops working and every
    /// session ends at once.
    pub async fn reset_user(
        &self,
        name: &str,
        setup_token_hash: &str,
        setup_expires_at: i64,
        pending_secret: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let id: i64 = sqlx::query(
            "UPDATE users SET password_hash = NULL, totp_secret = NULL, totp_pending_secret = $1,
                    setup_token_hash = $2, setup_expires_at = $3, failed_logins = 0,
                    locked_until = NULL, updated_at = $4
             WHERE name = $5 RETURNING id",
        )
        .bind(pending_secret)
        .bind(setup_token_hash)
        .bind(setup_expires_at)
        .bind(now)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {name:?}")))?
        .get(0);
        for table in ["sessions", "recovery_codes"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE user_id = $2",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn user_by_name(&self, name: &str) -> Result<Option<UserRow>> {
        Ok(
            sqlx::query(&format!("SELECT {USER_COLS} FROM users WHERE name = $1"))
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .as_ref()
                .map(user),
        )
    }

    pub async fn user_by_setup_token(&self, hash: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query(&format!(
            "SELECT {USER_COLS} FROM users WHERE setup_token_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(user))
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query(&format!("SELECT {USER_COLS} FROM users ORDER BY name"))
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(user)
                .collect(),
        )
    }

    /// Sets the password (and TOTP secret), replaces the recovery codes, spends the setup
    /// token and ends every session of the user. Fails if the token was spent meanwhile.
    pub async fn finish_setup(
        &self,
        id: i64,
        setup_token_hash: &str,
        c: &SetupCompletion<'_>,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query(
            "UPDATE users SET password_hash = $1, totp_secret = $2, totp_pending_secret = NULL,
                    totp_last_step = $6, setup_token_hash = NULL, setup_expires_at = NULL,
                    failed_logins = 0, locked_until = NULL, updated_at = $3
             WHERE id = $4 AND setup_token_hash = $5",
        )
        .bind(c.password_hash)
        .bind(c.totp_secret)
        .bind(now)
        .bind(id)
        .bind(setup_token_hash)
        .bind(c.totp_step)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::Invalid(
                "this setup link was already used; ask an admin for a new one".into(),
            ));
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for h in c.recovery_hashes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(id)
                .bind(h)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Accepts TOTP time step `step` for the user only if it is later than every step accepted
    /// before: one statement, so two nodes cannot both accept the same code.
    pub async fn accept_totp_step(&self, user_id: i64, step: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE users SET totp_last_step = $1
             WHERE id = $2 AND (totp_last_step IS NULL OR totp_last_step < $1)",
        )
        .bind(step)
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Spends a recovery code; true only the first time.
    pub async fn use_recovery_code(&self, user_id: i64, code_hash: &str, now: i64) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1
             WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(user_id)
        .bind(code_hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Counts a failed sign-in; at `max` failures the account locks until `now + lock_ms`.
    /// Returns the lock's end if this failure locked it.
    pub async fn user_login_failed(
        &self,
        user_id: i64,
        now: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let failures: i64 = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1
             RETURNING failed_logins",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let locked = if failures >= max {
            sqlx::query("UPDATE users SET failed_logins = 0, locked_until = $1 WHERE id = $2")
                .bind(now + lock_ms)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            Some(now + lock_ms)
        } else {
            None
        };
        tx.commit().await?;
        Ok(locked)
    }

    pub async fn user_login_succeeded(&self, user_id: i64) -> Result<()> {
        sqlx::query("UPDATE users SET failed_logins = 0 WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Lifts an account lock (admin action).
    pub async fn unlock_user(&self, name: &str, now: i64) -> Result<()> {
        let n = sqlx::query(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, updated_at = $1
             WHERE name = $2",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {name:?}")));
        }
        sqlx::query("DELETE FROM login_failures_ip")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ip_locked_until(&self, ip: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query("SELECT locked_until FROM login_failures_ip WHERE ip = $1")
                .bind(ip)
                .fetch_optional(&self.pool)
                .await?
                .and_then(|r| r.get(0)),
        )
    }

    /// Counts a failed sign-in from `ip` within a window of `window_ms`; at `max` the address
    /// is locked until `now + lock_ms`.
    pub async fn ip_login_failed(
        &self,
        ip: &str,
        now: i64,
        window_ms: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.write_tx().await?;
        let failures: i64 = sqlx::query(
            "INSERT INTO login_failures_ip (ip, failures, window_start) VALUES ($1, 1, $2)
             ON CONFLICT (ip) DO UPDATE SET
               failures = CASE WHEN login_failures_ip.window_start > $2 - $3
                               THEN login_failures_ip.failures + 1 ELSE 1 END,
               window_start = CASE WHEN login_failures_ip.window_start > $2 - $3
                                   THEN login_failures_ip.window_start ELSE $2 END
             RETURNING failures",
        )
        .bind(ip)
        .bind(now)
        .bind(window_ms)
        .fetch_one(&mut *tx)
        .await?
        .get(0);
        let locked = if failures >= max {
            sqlx::query(
                "UPDATE login_failures_ip SET locked_until = $1, failures = 0, window_start = $2
                 WHERE ip = $3",
            )
            .bind(now + lock_ms)
            .bind(now)
            .bind(ip)
            .execute(&mut *tx)
            .await?;
            Some(now + lock_ms)
        } else {
            None
        };
        tx.commit().await?;
        Ok(locked)
    }

    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf: &str,
        ip: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, user_id, csrf, ip, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(csrf)
        .bind(ip)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session's user and CSRF token, if the session exists and has not expired.
    pub async fn session(&self, id_hash: &str, now: i64) -> Result<Option<(UserRow, String)>> {
        let cols = USER_COLS
            .split(", ")
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(sqlx::query(&format!(
            "SELECT {cols}, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = $1 AND s.expires_at > $2"
        ))
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| (user(&r), r.get(10))))
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends every session of a user; returns how many.
    pub async fn delete_user_sessions(&self, user_id: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn insert_api_token(
        &self,
        name: &str,
        user: &str,
        scope: &str,
        token_hash: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let user_id: i64 = sqlx::query("SELECT id FROM users WHERE name = $1")
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user {user:?}")))?
            .get(0);
        let taken = sqlx::query("SELECT 1 FROM api_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if taken {
            return Err(StoreError::Invalid(format!(
                "a token named {name:?} exists"
            )));
        }
        sqlx::query(
            "INSERT INTO api_tokens (name, user_id, scope, token_hash, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(name)
        .bind(user_id)
        .bind(scope)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn revoke_api_token(&self, name: &str, now: i64) -> Result<()> {
        let n = sqlx::query(
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE name = $2",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("token {name:?}")));
        }
        Ok(())
    }

    /// The owner and scope of a live token (not revoked), noting its use.
    pub async fn api_token(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(UserRow, String, String)>> {
        let cols = USER_COLS
            .split(", ")
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT {cols}, t.scope, t.name FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
            .bind(now)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(Some((user(&r), r.get(10), r.get(11))))
    }

    pub async fn audit(&self, e: &AuditEntry) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, ip, action, target, before, after)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(&e.actor)
        .bind(&e.ip)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.before)
        .bind(&e.after)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest `limit` audit entries, newest first.
    pub async fn audit_entries(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        Ok(sqlx::query(
            "SELECT at, actor, ip, action, target, before, after FROM audit_log
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| AuditEntry {
            at: r.get(0),
            actor: r.get(1),
            ip: r.get(2),
            action: r.get(3),
            target: r.get(4),
            before: r.get(5),
            after: r.get(6),
        })
        .collect())
    }
}
