//! Domain values shared by every layer: account ids, partitions, user names and policy ARNs.
//! Newtypes where a mix-up would hurt; no I/O here.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A 12-digit AWS account id, validated by [`AccountId::parse`].
    AccountId
);
string_newtype!(
    /// An IAM user name (not its ARN).
    UserName
);
string_newtype!(
    /// The ARN of a managed policy, AWS-managed or customer-managed.
    PolicyArn
);

impl AccountId {
    /// Accepts exactly twelve ASCII digits.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!("`{s}` is not a 12-digit AWS account id"))
        }
    }
}

impl UserName {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl PolicyArn {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The policy's name: the last segment of its ARN (`arn:aws:iam::aws:policy/job-function/ViewOnlyAccess`
    /// names `ViewOnlyAccess`).
    pub fn policy_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

/// The AWS partition an account lives in. IAM is a global service with one signing region per
/// partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partition {
    #[default]
    Aws,
    AwsCn,
    AwsUsGov,
}

impl Partition {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "aws" => Ok(Self::Aws),
            "aws-cn" => Ok(Self::AwsCn),
            "aws-us-gov" => Ok(Self::AwsUsGov),
            other => Err(format!(
                "`{other}` is not a partition (expected aws, aws-cn or aws-us-gov)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
        }
    }

    /// The partition's home region: where IAM is signed for, and where iamsweep sends STS
    /// (the base credential chain's too) unless an endpoint is configured for it.
    pub fn iam_region(self) -> &'static str {
        match self {
            Self::Aws => "us-east-1",
            Self::AwsCn => "cn-north-1",
            Self::AwsUsGov => "us-gov-west-1",
        }
    }

    /// The one region AWS Organizations is served from in this partition (in China it is not
    /// the IAM region).
    pub fn organizations_region(self) -> &'static str {
        match self {
            Self::Aws => "us-east-1",
            Self::AwsCn => "cn-northwest-1",
            Self::AwsUsGov => "us-gov-west-1",
        }
    }

    /// The partition a region belongs to, for the three partitions iamsweep supports; `None`
    /// for any other (the ISO partitions).
    pub fn of_region(region: &str) -> Option<Self> {
        if region.starts_with("us-gov-") {
            Some(Self::AwsUsGov)
        } else if region.starts_with("cn-") {
            Some(Self::AwsCn)
        } else if region.contains("-iso") {
            None
        } else {
            Some(Self::Aws)
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_exactly_twelve_digits() {
        assert!(AccountId::parse("111111111111").is_ok());
        assert!(AccountId::parse("11111111111").is_err());
        assert!(AccountId::parse("1111111111111").is_err());
        assert!(AccountId::parse("11111111111a").is_err());
        assert!(AccountId::parse("１１１１１１１１１１１１").is_err());
    }

    #[test]
    fn regions_belong_to_their_partition() {
        assert_eq!(
            Partition::of_region("us-gov-east-1"),
            Some(Partition::AwsUsGov)
        );
        assert_eq!(
            Partition::of_region("cn-northwest-1"),
            Some(Partition::AwsCn)
        );
        assert_eq!(Partition::of_region("eu-west-1"), Some(Partition::Aws));
        assert_eq!(Partition::of_region("us-iso-east-1"), None);
        assert_eq!(Partition::AwsCn.organizations_region(), "cn-northwest-1");
        assert_eq!(Partition::AwsCn.iam_region(), "cn-north-1");
    }

    #[test]
    fn policy_name_is_the_last_arn_segment() {
        let arn = PolicyArn::new("arn:aws:iam::aws:policy/job-function/ViewOnlyAccess");
        assert_eq!(arn.policy_name(), "ViewOnlyAccess");
        let arn = PolicyArn::new("arn:aws:iam::111111111111:policy/a+b=c,d.e@f-g_h");
        assert_eq!(arn.policy_name(), "a+b=c,d.e@f-g_h");
    }
}
