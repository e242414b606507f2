//! `Debug` for settings that hold secrets: every field is listed, secrets print as
//! `[redacted]`, so a `{:?}` in a log line or a panic message cannot leak a key.

use std::fmt;

/// Shows whether a secret is set, never its value.
pub struct Redacted<'a, T>(pub &'a T);

impl fmt::Debug for Redacted<'_, Option<String>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some([redacted])"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for Redacted<'_, Vec<String>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted; {}]", self.0.len())
    }
}

/// Implements `Debug` for struct `$ty`, printing the `secret` fields through [`Redacted`].
/// The destructuring lists every field without `..`, so adding a field to the struct
/// without deciding here whether it is secret does not compile.
#[macro_export]
macro_rules! redacting_debug {
    ($ty:ident { secret: [$($s:ident),* $(,)?], plain: [$($p:ident),* $(,)?] $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                let $ty { $($s,)* $($p,)* } = self;
                let mut d = f.debug_struct(stringify!($ty));
                $( d.field(stringify!($s), &$crate::domain::Redacted($s)); )*
                $( d.field(stringify!($p), $p); )*
                d.finish()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    struct Example {
        key: Option<String>,
        keys: Vec<String>,
        name: String,
    }
    crate::redacting_debug!(Example {
        secret: [key, keys],
        plain: [name]
    });

    #[test]
    fn secrets_are_hidden_and_plain_fields_shown() {
        let e = Example {
            key: Some("hunter2".into()),
            keys: vec!["k1".into(), "k2".into()],
            name: "visible".into(),
        };
        let text = format!("{e:?}");
        assert!(!text.contains("hunter2") && !text.contains("k1"), "{text}");
        assert!(text.contains("Some([redacted])") && text.contains("[redacted; 2]") && text.contains("visible"));
    }
}
