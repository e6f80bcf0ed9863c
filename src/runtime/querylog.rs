//! `[querylog]` settings (SPEC §2, §12 "Query log"): the JSON-lines file and the store.

use std::time::Duration;

use crate::config::{ConfigFile, SourceFile};
use crate::diag::Diagnostic;
use crate::querylog::store::{StoreKind, StoreSpec};

/// The store's file under the state directory.
pub const SQLITE_FILE: &str = "querylog.sqlite";
/// `retention` unless set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// The shortest `retention` (a shorter one would delete rows before a search saw them).
const MIN_RETENTION: Duration = Duration::from_secs(60);
/// The longest `retention` (ten years: the end of times to a nanosecond clock).
const MAX_RETENTION: Duration = Duration::from_secs(3650 * 86_400);

/// The store `[querylog]` asks for: `store` (`"sqlite"`, the default when `[api]` is on,
/// or `"none"`) and `retention`; problems go to `diags` with their positions.
pub(super) fn store_spec(
    main: &ConfigFile,
    mf: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<StoreSpec> {
    let q = main.querylog.as_ref();
    let retention = match q.and_then(|q| q.retention.as_ref()) {
        None => DEFAULT_RETENTION,
        Some(r) => match crate::lists::url::parse_duration(r.get_ref()) {
            Ok(d) if (MIN_RETENTION..=MAX_RETENTION).contains(&d) => d,
            Ok(_) => {
                diags.push(mf.diag(
                    &r.span(),
                    format!(
                        "[querylog] retention `{}` is out of range: from 1m to 3650d",
                        r.get_ref()
                    ),
                ));
                return None;
            }
            Err(e) => {
                diags.push(mf.diag(&r.span(), format!("[querylog] retention: {e}")));
                return None;
            }
        },
    };
    let sqlite = || {
        let state = main
            .server
            .state_dir
            .as_ref()
            .map(|d| mf.resolve(d.get_ref()));
        let state = crate::lists::url::state_dir(state.as_deref());
        Some(StoreSpec {
            kind: StoreKind::Sqlite {
                path: state.join(SQLITE_FILE),
            },
            retention,
        })
    };
    match q.and_then(|q| q.store.as_ref()) {
        None if main.api.is_some() => sqlite(),
        None => None,
        Some(s) => match s.get_ref().as_str() {
            "sqlite" => sqlite(),
            "none" => None,
            "postgres" => {
                diags.push(mf.diag(
                    &s.span(),
                    "[querylog] store \"postgres\" needs a fleet ([fleet] postgres), which this version does not have yet",
                ));
                None
            }
            other => {
                diags.push(mf.diag(
                    &s.span(),
                    format!("[querylog] store `{other}` is unknown: \"sqlite\" or \"none\""),
                ));
                None
            }
        },
    }
}
