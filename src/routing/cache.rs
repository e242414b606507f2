//! The routing tables as the worker sees them, re-read only when they changed.
//!
//! A `routing_version` counter, bumped by database triggers on any change to mappings or
//! rules (from this process, the CLI, another instance or plain SQL), is checked once per
//! claim; the tables are re-read only when it moved. So a change applies to every event
//! claimed after it commits, without a restart and without re-reading per event.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::ai::AiClassifier;
use super::{CompiledRule, Mapping, RouteDecision, decide, detect_payload};
use crate::escape::escaped;
use crate::store::{Db, StoreError};

/// Rules grouped by provider in evaluation order, and mappings by provider.
#[derive(Default)]
struct Tables {
    version: Option<i64>,
    rules: HashMap<String, Vec<CompiledRule>>,
    mappings: HashMap<String, Mapping>,
}

/// Cached routing tables plus the route function that uses them.
pub struct RoutingCache {
    db: Db,
    tables: RwLock<Arc<Tables>>,
    ai: Option<AiClassifier>,
}

impl RoutingCache {
    /// An empty cache; the first [`RoutingCache::refresh`] loads the tables.
    pub fn new(db: Db) -> RoutingCache {
        RoutingCache {
            db,
            tables: RwLock::new(Arc::new(Tables::default())),
            ai: None,
        }
    }

    /// Enables the AI classifier for low-confidence detections (`None` keeps it off).
    pub fn with_ai(mut self, ai: Option<AiClassifier>) -> RoutingCache {
        self.ai = ai;
        self
    }

    fn current(&self) -> Arc<Tables> {
        self.tables.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reloads the tables if their version changed.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let version = self.db.routing_version().await?;
        if self.current().version == Some(version) {
            return Ok(());
        }
        let loaded = self.db.routing_tables().await?;
        let mut tables = Tables {
            version: Some(version),
            ..Tables::default()
        };
        for rule in loaded.rules {
            // A rule edited by hand into invalid conditions is skipped, not fatal to every event.
            let (id, provider, name) = (rule.id, rule.provider.clone(), rule.name.clone());
            match CompiledRule::compile(rule) {
                Ok(r) => tables.rules.entry(provider).or_default().push(r),
                Err(e) => {
                    tracing::warn!(rule_id = id, provider = %escaped(&provider), rule = %escaped(&name), error = %escaped(&e.to_string()), "skipping stored rule with invalid conditions")
                }
            }
        }
        for rules in tables.rules.values_mut() {
            rules.sort_by_key(|r| (r.rule.priority, r.rule.id));
        }
        for m in loaded.mappings {
            tables.mappings.insert(m.provider.clone(), m);
        }
        *self.tables.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tables);
        Ok(())
    }

    /// Detects the provider of a stored payload and decides its action.
    pub async fn route(&self, payload: &Value) -> RouteDecision {
        let mut detection = detect_payload(payload);
        let ai = match &self.ai {
            Some(ai) if ai.wanted(&detection) => ai.classify(payload, &mut detection).await,
            _ => None,
        };
        let tables = self.current();
        let rules = tables.rules.get(&detection.provider).map(Vec::as_slice).unwrap_or(&[]);
        let mapping = tables.mappings.get(&detection.provider);
        let mut decision = decide(payload, detection, rules, mapping);
        if let Some(ai) = ai {
            decision.event_type = ai.event_type;
            decision.ai_detection = Some(ai.answer);
        }
        decision
    }
}
