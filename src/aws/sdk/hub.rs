//! AWS Security Hub: `BatchImportFindings` with the account's own role. The only place that
//! names `aws_sdk_securityhub`.

use std::collections::HashMap;

use aws_sdk_securityhub::types::{
    AwsIamUserDetails, AwsSecurityFinding, Compliance, ComplianceStatus, Partition, Recommendation,
    RecordState, Remediation, Resource, ResourceDetails, Severity, SeverityLabel, Workflow,
    WorkflowStatus,
};

use super::credentials::AssumedRole;
use super::errors::map_sdk_error;
use crate::aws::{AwsError, Hub, HubFinding, HubImported, Op};

pub struct SdkHub {
    client: aws_sdk_securityhub::Client,
    /// Keeps the account's role session (and its renewals) alive with the client.
    _role: Option<std::sync::Arc<AssumedRole>>,
}

impl SdkHub {
    pub(super) fn new(
        client: aws_sdk_securityhub::Client,
        role: Option<std::sync::Arc<AssumedRole>>,
    ) -> Self {
        Self {
            client,
            _role: role,
        }
    }
}

/// The ASFF finding, with every field Security Hub requires.
fn asff(f: &HubFinding) -> AwsSecurityFinding {
    let user = AwsIamUserDetails::builder()
        .user_name(&f.user_name)
        .set_user_id(f.user_id.clone())
        .build();
    let mut compliance =
        Compliance::builder().status(ComplianceStatus::from(f.compliance.as_str()));
    for r in &f.related_requirements {
        compliance = compliance.related_requirements(r);
    }
    let mut b = AwsSecurityFinding::builder()
        .schema_version("2018-10-08")
        .id(&f.id)
        .product_arn(&f.product_arn)
        .generator_id(&f.generator_id)
        .aws_account_id(&f.account_id)
        .region(&f.region)
        .created_at(&f.created_at)
        .updated_at(&f.updated_at)
        .severity(
            Severity::builder()
                .label(SeverityLabel::from(f.severity.as_str()))
                .build(),
        )
        .title(&f.title)
        .description(&f.description)
        .resources(
            Resource::builder()
                .r#type("AwsIamUser")
                .id(&f.user_arn)
                .partition(Partition::from(f.partition.as_str()))
                .region(&f.region)
                .details(ResourceDetails::builder().aws_iam_user(user).build())
                .build(),
        )
        .compliance(compliance.build())
        .record_state(RecordState::from(f.record_state.as_str()))
        .workflow(
            Workflow::builder()
                .status(WorkflowStatus::from(f.workflow.as_str()))
                .build(),
        )
        .remediation(
            Remediation::builder()
                .recommendation(Recommendation::builder().text(&f.remediation).build())
                .build(),
        )
        .set_user_defined_fields(Some(
            f.fields
                .iter()
                .cloned()
                .collect::<HashMap<String, String>>(),
        ));
    for t in &f.types {
        b = b.types(t);
    }
    b.build()
}

impl Hub for SdkHub {
    async fn import(&self, findings: &[HubFinding]) -> Result<HubImported, AwsError> {
        let out = self
            .client
            .batch_import_findings()
            .set_findings(Some(findings.iter().map(asff).collect()))
            .send()
            .await
            .map_err(|e| map_sdk_error(Op::BatchImportFindings, e))?;
        Ok(HubImported {
            failed: out
                .failed_findings()
                .iter()
                .map(|e| {
                    (
                        e.id().unwrap_or_default().to_owned(),
                        e.error_code().unwrap_or_default().to_owned(),
                        e.error_message().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
    }
}
