//! Keeps the local tables as small as they were before the run. moto copies every table a
//! transaction touches, so its latency grows with the number of items: without this, a
//! thousand invocations would measure moto's copying more than the function.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;

use super::environment::Function;

/// Every table of one function holds the tenant in `mid` (its hash key); the sort key differs.
pub struct TenantCleaner {
    client: Client,
    tables: Vec<(&'static str, &'static str)>,
    mid: String,
}

impl TenantCleaner {
    pub fn new(client: Client, function: Function, mid: &str) -> Self {
        Self {
            client,
            tables: function.tables(),
            mid: mid.to_owned(),
        }
    }

    /// Deletes every item of the tenant, in every table of the function.
    pub async fn clear(&self) -> Result<(), aws_sdk_dynamodb::Error> {
        for (table, sort_key) in &self.tables {
            let mut pages = self
                .client
                .query()
                .table_name(*table)
                .key_condition_expression("mid = :mid")
                .expression_attribute_values(":mid", AttributeValue::S(self.mid.clone()))
                .projection_expression("#sort")
                .expression_attribute_names("#sort", *sort_key)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item?;
                let Some(sort) = item.get(*sort_key) else { continue };
                self.client
                    .delete_item()
                    .table_name(*table)
                    .key("mid", AttributeValue::S(self.mid.clone()))
                    .key(*sort_key, sort.clone())
                    .send()
                    .await?;
            }
        }
        Ok(())
    }
}
