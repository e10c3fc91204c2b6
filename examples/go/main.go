// A Go client of the sscard suite, written from protos/ alone (examples/go/README.md).
//
// It registers a person (the registry feed), applies for a card at an instant branch of the
// bank (made on the spot, A22.3), follows the application with WatchSaga (losing the stream once
// and resuming it from the last sequence), collects and activates the card at the branch, tops
// up 50 yuan at a transit kiosk (retrying a call whose deadline ran out with the same request
// id), and decodes two refusals' google.rpc.ErrorInfo and BadRequest.
//
// Transport: mutual TLS. SSCARD_TLS_CA_FILE is the trust bundle; each credential is bound to
// the client certificate it was issued to, SSCARD_TLS_CERT_<NAME>_FILE and _KEY_<NAME>_FILE
// (SSCARD_TLS_CERT_FILE and SSCARD_TLS_KEY_FILE when they are the same for every credential).
// SSCARD_TLS=off speaks plaintext to services started with TLS off (development only).
//
// Credentials: each role's JWT, as `sscard token` prints it, in SSCARD_TOKEN_<NAME> or in the
// file SSCARD_TOKEN_<NAME>_FILE names; NAME is OPS, REGISTRY, BRANCH or KIOSK.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	bankv1 "sscard/gen/go/sscard/bank/v1"
	cardv1 "sscard/gen/go/sscard/card/v1"
	commonv1 "sscard/gen/go/sscard/common/v1"
	identityv1 "sscard/gen/go/sscard/identity/v1"
	transitv1 "sscard/gen/go/sscard/transit/v1"
)

const bank = "ICBC"

var (
	photo = append([]byte{0xff, 0xd8, 0xff, 0xe0}, make([]byte, 64)...)
	ports = map[string]string{"identity": "50051", "card": "50052", "bank": "50053", "transit": "50054"}
)

// requestBytes is the largest request message a service reads (its SSCARD_MAX_REQUEST_BYTES,
// 1 MiB by default); a larger one is refused RESOURCE_EXHAUSTED by gRPC itself.
const requestBytes = 1 << 20

// slices cuts a bulk client stream's request (ImportPersons, ApplyBatch) along its repeated
// field into messages that each fit limit bytes: the first keeps the other fields (the header),
// each carries as many items as fit. An item larger than the limit travels alone, and the
// service refuses it.
func slices(request proto.Message, limit int) []proto.Message {
	whole := request.ProtoReflect()
	var field protoreflect.FieldDescriptor
	fields := whole.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		if f := fields.Get(i); f.IsList() && f.Message() != nil {
			field = f
		}
	}
	items := whole.Get(field).List()
	first := proto.Clone(request)
	first.ProtoReflect().Clear(field)
	messages := []proto.Message{first}
	current, used := first.ProtoReflect(), proto.Size(first)
	for i := 0; i < items.Len(); i++ {
		item := items.Get(i)
		cost := protowire.SizeTag(field.Number()) + protowire.SizeBytes(proto.Size(item.Message().Interface()))
		if used > 0 && used+cost > limit {
			current, used = whole.New(), 0
			messages = append(messages, current.Interface())
		}
		current.Mutable(field).List().Append(item)
		used += cost
	}
	return messages
}

// retryable: transport failures after which the same request again, with the same request
// id, is safe.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// --- credentials and connections ----------------------------------------------------------

func setting(name, fallback string) string {
	if value := strings.TrimSpace(os.Getenv(name)); value != "" {
		return value
	}
	return fallback
}

func token(name string) (string, error) {
	variable := "SSCARD_TOKEN_" + name
	if value := setting(variable, ""); value != "" {
		return value, nil
	}
	if file := setting(variable+"_FILE", ""); file != "" {
		data, err := os.ReadFile(file)
		return strings.TrimSpace(string(data)), err
	}
	return "", fmt.Errorf("set %s (or %s_FILE) to a credential from `sscard token`", variable, variable)
}

// transport: mutual TLS with the certificate the credential NAME is bound to.
func transport(name string) (grpc.DialOption, error) {
	if strings.EqualFold(setting("SSCARD_TLS", "on"), "off") {
		return grpc.WithInsecure(), nil
	}
	bundle, err := os.ReadFile(setting("SSCARD_TLS_CA_FILE", "var/tls/ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("the trust bundle (SSCARD_TLS_CA_FILE): %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundle) {
		return nil, errors.New("the trust bundle (SSCARD_TLS_CA_FILE) holds no PEM certificate")
	}
	certFile := setting("SSCARD_TLS_CERT_"+name+"_FILE", setting("SSCARD_TLS_CERT_FILE", ""))
	keyFile := setting("SSCARD_TLS_KEY_"+name+"_FILE", setting("SSCARD_TLS_KEY_FILE", ""))
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("set SSCARD_TLS_CERT_%[1]s_FILE and SSCARD_TLS_KEY_%[1]s_FILE "+
			"(or SSCARD_TLS_CERT_FILE and SSCARD_TLS_KEY_FILE) to the client certificate "+
			"the %[1]s credential is bound to", name)
	}
	certificate, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("the %s client certificate: %w", name, err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{certificate},
		RootCAs:      roots,
		MinVersion:   tls.VersionTLS12,
	})), nil
}

// caller: one credential (and the certificate it is bound to) and its connections.
type caller struct {
	bearer string
	conns  map[string]*grpc.ClientConn
}

func newCaller(name string) (*caller, error) {
	jwt, err := token(name)
	if err != nil {
		return nil, err
	}
	option, err := transport(name)
	if err != nil {
		return nil, err
	}
	c := &caller{bearer: "Bearer " + jwt, conns: map[string]*grpc.ClientConn{}}
	for service, port := range ports {
		target := setting("SSCARD_"+strings.ToUpper(service)+"_TARGET", "127.0.0.1:"+port)
		conn, err := grpc.Dial(target, option)
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns[service] = conn
	}
	return c, nil
}

func (c *caller) close() {
	for _, conn := range c.conns {
		conn.Close()
	}
}

// context: a call with this caller's credential, ending at the deadline.
func (c *caller) context(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return metadata.AppendToOutgoingContext(ctx, "authorization", c.bearer), cancel
}

// --- refusals -----------------------------------------------------------------------------

// refusal: a refusal as the suite sends it, code, ErrorInfo (reason, rule) and BadRequest
// violations, decoded from the status details (the `grpc-status-details-bin` trailer).
type refusal struct {
	code         codes.Code
	reason, rule string
	violations   []string
}

func decode(err error) refusal {
	s := status.Convert(err)
	r := refusal{code: s.Code()}
	for _, detail := range s.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			r.reason, r.rule = d.GetReason(), d.GetMetadata()["rule"]
		case *errdetails.BadRequest:
			for _, v := range d.GetFieldViolations() {
				r.violations = append(r.violations, v.GetField()+": "+v.GetDescription())
			}
		}
	}
	return r
}

// codeNames: each code as the gRPC specification spells it (INVALID_ARGUMENT).
var codeNames = map[codes.Code]string{
	codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN",
	codes.InvalidArgument: "INVALID_ARGUMENT", codes.DeadlineExceeded: "DEADLINE_EXCEEDED",
	codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
	codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
	codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED",
	codes.OutOfRange: "OUT_OF_RANGE", codes.Unimplemented: "UNIMPLEMENTED",
	codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE", codes.DataLoss: "DATA_LOSS",
	codes.Unauthenticated: "UNAUTHENTICATED",
}

// --- helpers ------------------------------------------------------------------------------

func randomInt(limit int64) int64 {
	n, err := rand.Int(rand.Reader, big.NewInt(limit))
	if err != nil {
		panic(err)
	}
	return n.Int64()
}

// residentID: a valid resident ID number (GB 11643 check character), born in 1970-2002.
func residentID() string {
	birth := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, int(randomInt(12000)))
	first17 := fmt.Sprintf("110105%s%03d", birth.Format("20060102"), randomInt(1000))
	weights := []int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i, digit := range first17 {
		sum += int(digit-'0') * weights[i]
	}
	return first17 + string("10X98765432"[sum%11])
}

// watch: the events of a saga after sequence `after`; onEvent returning false drops the
// stream mid-way (the client goes away). It answers the last sequence received and whether
// the final event came.
func watch(c *caller, sagaID string, after int64, onEvent func(*cardv1.SagaEvent) bool) (int64, bool, error) {
	ctx, cancel := c.context(2 * time.Minute)
	defer cancel()
	stream, err := cardv1.NewCardServiceClient(c.conns["card"]).WatchSaga(
		ctx, &cardv1.WatchSagaRequest{SagaId: sagaID, AfterSequence: after})
	if err != nil {
		return after, false, err
	}
	last := after
	for {
		event, err := stream.Recv()
		if err == io.EOF {
			return last, false, nil
		}
		if err != nil {
			// UNAVAILABLE WATCH_INTERRUPTED (the server drains) or a lost connection: watch again.
			if retryable(err) {
				return last, false, nil
			}
			return last, false, err
		}
		last = event.GetSequence()
		if !onEvent(event) && !event.GetFinal() {
			return last, false, nil // cancel() ends the stream
		}
		if event.GetFinal() {
			return last, true, nil
		}
	}
}

func printEvent(event *cardv1.SagaEvent) {
	fmt.Printf("event %d: %s %s\n", event.GetSequence(), event.GetState(), event.GetStep())
	if event.GetFinal() && event.GetState() == cardv1.SagaState_SAGA_STATE_FAILED {
		fmt.Printf("refused: %s rule %s\n", event.GetRefusalReason(), event.GetRefusalRule())
	}
}

func run() error {
	callers := map[string]*caller{}
	for _, name := range []string{"OPS", "REGISTRY", "BRANCH", "KIOSK"} {
		c, err := newCaller(name)
		if err != nil {
			return err
		}
		defer c.close()
		callers[name] = c
	}
	ops, registry, branch, kiosk := callers["OPS"], callers["REGISTRY"], callers["BRANCH"], callers["KIOSK"]
	branchID := setting("SSCARD_BRANCH", "ICBC-GO-01")
	tag := make([]byte, 4)
	if _, err := rand.Read(tag); err != nil {
		return err
	}
	runID := hex.EncodeToString(tag)

	ctx, cancel := ops.context(10 * time.Second)
	defer cancel()
	if _, err := bankv1.NewBankServiceClient(ops.conns["bank"]).UpsertBranch(ctx, &bankv1.UpsertBranchRequest{
		RequestId: "go-branch-" + branchID,
		Branch:    &bankv1.Branch{BankCode: bank, BranchId: branchID, Name: "Go example branch", Instant: true},
	}); err != nil {
		return err
	}

	document := &commonv1.IdentityDocument{Type: commonv1.DocumentType_DOCUMENT_TYPE_RESIDENT_ID, Number: residentID()}
	ctx, cancel = registry.context(10 * time.Second)
	defer cancel()
	feed, err := identityv1.NewIdentityServiceClient(registry.conns["identity"]).ImportPersons(ctx)
	if err != nil {
		return err
	}
	for _, message := range slices(&identityv1.ImportPersonsRequest{
		BatchId: "go-feed-" + runID,
		Records: []*identityv1.PersonRecord{{
			Document: document, Name: "王芳", InsuredInBeijing: true, Source: identityv1.RecordSource_RECORD_SOURCE_HR,
		}},
	}, requestBytes) {
		if err := feed.Send(message.(*identityv1.ImportPersonsRequest)); err != nil {
			return err
		}
	}
	imported, err := feed.CloseAndRecv()
	if err != nil {
		return err
	}
	fmt.Printf("registered: %d person\n", imported.GetCreated())

	cards := cardv1.NewCardServiceClient(branch.conns["card"])
	applicant := func(document *commonv1.IdentityDocument) *cardv1.Applicant {
		return &cardv1.Applicant{
			Document:   document,
			Name:       "王芳",
			Photo:      photo,
			Occupation: "nurse",
			Mobile:     "13912345678",
			Address:    "2 Fuxingmen Street, Xicheng, Beijing",
		}
	}
	application := func(requestID string, applicant *cardv1.Applicant) *cardv1.ApplyRequest {
		return &cardv1.ApplyRequest{
			RequestId:      requestID,
			Applicant:      applicant,
			BankCode:       bank,
			Delivery:       cardv1.Delivery_DELIVERY_BRANCH_PICKUP,
			PickupBranchId: branchID,
		}
	}
	ctx, cancel = branch.context(10 * time.Second)
	defer cancel()
	started, err := cards.Apply(ctx, application("go-apply-"+runID, applicant(document)))
	if err != nil {
		return err
	}
	fmt.Printf("applied: card %s, saga %s\n", started.GetCardId(), started.GetSagaId())

	// Follow the saga; drop the stream after the first event, then resume from its sequence.
	last, final, err := watch(branch, started.GetSagaId(), 0, func(event *cardv1.SagaEvent) bool {
		printEvent(event)
		return false
	})
	if err != nil {
		return err
	}
	if !final {
		fmt.Printf("stream lost after sequence %d; resuming\n", last)
	}
	for !final {
		last, final, err = watch(branch, started.GetSagaId(), last, func(event *cardv1.SagaEvent) bool {
			printEvent(event)
			return true
		})
		if err != nil {
			return err
		}
	}

	ctx, cancel = branch.context(10 * time.Second)
	defer cancel()
	if _, err := cards.RecordCollection(ctx, &cardv1.RecordCollectionRequest{
		RequestId: "go-collect-" + runID, CardId: started.GetCardId(),
		Method: cardv1.CollectionMethod_COLLECTION_METHOD_AT_BRANCH, Document: document,
	}); err != nil {
		return err
	}
	active, err := cards.ActivateCard(ctx, &cardv1.ActivateCardRequest{
		RequestId: "go-activate-" + runID, CardId: started.GetCardId(), Document: document,
	})
	if err != nil {
		return err
	}
	fmt.Printf("card status: %s\n", active.GetStatus())

	// A top-up whose answer does not arrive in time: the same request id again never pays twice.
	wallets := transitv1.NewTransitServiceClient(kiosk.conns["transit"])
	topUp := &transitv1.TopUpRequest{RequestId: "go-topup-" + runID, CardId: started.GetCardId(), AmountFen: 5000}
	for attempt := 1; ; attempt++ {
		timeout := 10 * time.Second
		if attempt == 1 {
			timeout = time.Millisecond
		}
		ctx, cancel := kiosk.context(timeout)
		_, err := wallets.TopUp(ctx, topUp)
		cancel()
		if err == nil {
			break
		}
		if !retryable(err) || attempt >= 5 {
			return err
		}
		fmt.Printf("top-up attempt %d: %s; retrying with the same request id\n", attempt, codeNames[status.Code(err)])
	}
	ctx, cancel = kiosk.context(10 * time.Second)
	defer cancel()
	wallet, err := wallets.GetBalance(ctx, &transitv1.GetBalanceRequest{CardId: started.GetCardId()})
	if err != nil {
		return err
	}
	fen := wallet.GetBalanceFen()
	fmt.Printf("balance: %d.%02d yuan (%d fen)\n", fen/100, fen%100, fen)

	// Two refusals, decoded: a malformed document, and a second card for the same person.
	malformed := &commonv1.IdentityDocument{Type: commonv1.DocumentType_DOCUMENT_TYPE_RESIDENT_ID, Number: "123"}
	for _, attempt := range []struct {
		label   string
		request *cardv1.ApplyRequest
	}{
		{"malformed", application("go-bad-"+runID, applicant(malformed))},
		{"second card", application("go-again-"+runID, applicant(document))},
	} {
		ctx, cancel := branch.context(10 * time.Second)
		_, err := cards.Apply(ctx, attempt.request)
		cancel()
		if err == nil {
			fmt.Printf("%s: accepted\n", attempt.label)
			continue
		}
		r := decode(err)
		fmt.Printf("%s: %s %s rule %s\n", attempt.label, codeNames[r.code], r.reason, r.rule)
		for _, violation := range r.violations {
			fmt.Printf("  field %s\n", violation)
		}
	}
	fmt.Println("done")
	return nil
}

func main() {
	if err := run(); err != nil {
		r := decode(err)
		fmt.Fprintf(os.Stderr, "failed: %s %s %s %s\n", codeNames[r.code], r.reason, r.rule, status.Convert(err).Message())
		os.Exit(1)
	}
}
