//! `posthorn hash-password`: reads a password (twice and without echo on a terminal, one
//! line from stdin otherwise), refuses a short one, and prints its argon2 hash for
//! `[admin] password_hash`.

use std::io::{BufRead as _, IsTerminal as _};
use std::process::ExitCode;

use crate::password;

/// Reads the password, prints the hash on stdout and the config line on stderr. Exit 0,
/// or 2 when the password is refused or cannot be read.
pub fn hash_password() -> ExitCode {
    let read = if std::io::stdin().is_terminal() {
        from_terminal()
    } else {
        from_stdin()
    };
    let password = match read.and_then(|p| check_length(&p).map(|()| p)) {
        Ok(password) => password,
        Err(message) => {
            eprintln!("posthorn: {message}");
            return ExitCode::from(2);
        }
    };
    let hash = password::hash(&password);
    super::out(&hash);
    eprintln!("put this line under [admin] in config.toml:\n\n    password_hash = \"{hash}\"\n");
    ExitCode::SUCCESS
}

fn from_terminal() -> Result<String, String> {
    let prompt = |text: &str| {
        rpassword::prompt_password(text)
            .map_err(|err| format!("could not read the password from the terminal: {err}"))
    };
    let first = prompt("New admin password: ")?;
    // Refuse before asking again: a short password will not get better on the retype.
    check_length(&first)?;
    let again = prompt("The same again: ")?;
    if first != again {
        return Err("the two passwords differ; nothing was hashed".into());
    }
    Ok(first)
}

/// One line from stdin, its line ending removed (a script's `echo` adds one).
fn from_stdin() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|err| format!("could not read the password from stdin: {err}"))?;
    Ok(strip_line_end(line))
}

fn strip_line_end(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

fn check_length(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < password::MIN_LEN {
        return Err(format!(
            "the password is {length} character{} long; use at least {} (nothing was hashed)",
            if length == 1 { "" } else { "s" },
            password::MIN_LEN
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_line_end_is_stripped() {
        assert_eq!(strip_line_end("secret pass \n".into()), "secret pass ");
        assert_eq!(strip_line_end("secret\r\n".into()), "secret");
        assert_eq!(strip_line_end("  secret".into()), "  secret");
        assert_eq!(strip_line_end("a\n\n".into()), "a\n");
    }

    #[test]
    fn short_passwords_are_refused_by_characters_not_bytes() {
        assert!(check_length(&"x".repeat(password::MIN_LEN)).is_ok());
        let err = check_length(&"x".repeat(password::MIN_LEN - 1)).unwrap_err();
        let named = format!("{} characters", password::MIN_LEN - 1);
        let wanted = format!("at least {}", password::MIN_LEN);
        assert!(err.contains(&named) && err.contains(&wanted), "{err}");
        assert!(check_length(&"é".repeat(password::MIN_LEN - 1)).is_err());
    }
}
