//! Implementations of the ports.
//!
//! - `memory`: event store, queue and clocks in memory, with the DynamoDB/SQS semantics.
//! - `sim`: a simulated cloud with boot times, health and injected faults.
//! - `local`: all of them wired to the real runner, for the demo and the tests.
//! - `dynamodb`: the event store on a DynamoDB table.
//! - `sqs`: the queue on SQS, with its dead-letter queue.
//! - `aws`: the cloud on the EC2, Auto Scaling, ELB, IAM, STS and CloudWatch APIs.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod local;
pub mod memory;
pub mod sim;
#[cfg(feature = "aws")]
pub mod sqs;
