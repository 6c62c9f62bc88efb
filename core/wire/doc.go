// Package wire is the contract between the tracehop host and a driver
// process, in one place: what both sides must agree on, written with the
// standard library and core only, so that anything may import it (the YAML
// config loader does, for the name and checksum rules) without pulling in
// gRPC or go-plugin.
//
// It holds:
//   - the handshake: ProtocolVersion (the N of the proto package
//     tracehop.driver.vN), the magic cookie, the plugin name, the limit on
//     one message and the version report (InfoEnv, DriverInfo);
//   - the driver executable: BinaryPrefix, ValidateName and ParseChecksum
//     (the pin tracing.driver.checksum gives);
//   - the packed span batch layout that an Export carries (AppendBatch,
//     Decoder), what a driver said its decoder reads beyond it (Layout),
//     and the well-known tag keys it may carry as numbers (TagKey,
//     TagKeyNumber);
//   - ConfigError, a driver's refusal of its config, the same type on both
//     sides (sdk.ConfigError is an alias).
//
// The error classes a driver marks its failures with are core's (Retryable,
// Permanent, RetryAfter, PartialRejection). The gRPC service generated from
// driver.proto, and the one mapping of those classes and of ConfigError to
// gRPC statuses and back, are in the subpackage driverpb.
//
// It is not for: launching or supervising driver processes (core/driverhost
// does), or serving a driver (sdk does). Both of those import it.
package wire
