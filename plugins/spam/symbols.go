package main

// The symbols the plugin finds, named as rspamd names the same finding
// where it has one, so that an operator who knows rspamd reads them at
// once. Their default weights are in defaultScores.
const (
	spfAllow    = "R_SPF_ALLOW"
	spfFail     = "R_SPF_FAIL"
	spfSoftfail = "R_SPF_SOFTFAIL"
	spfNeutral  = "R_SPF_NEUTRAL"
	spfNone     = "R_SPF_NA"
	spfPermfail = "R_SPF_PERMFAIL"
	spfDNSFail  = "R_SPF_DNSFAIL"

	dkimAllow    = "R_DKIM_ALLOW"
	dkimReject   = "R_DKIM_REJECT"
	dkimPermfail = "R_DKIM_PERMFAIL"
	dkimTempfail = "R_DKIM_TEMPFAIL"
	dkimNone     = "R_DKIM_NA"

	dmarcAllow      = "DMARC_POLICY_ALLOW"
	dmarcReject     = "DMARC_POLICY_REJECT"
	dmarcQuarantine = "DMARC_POLICY_QUARANTINE"
	dmarcSoftfail   = "DMARC_POLICY_SOFTFAIL"
	dmarcNone       = "DMARC_NA"
	dmarcBadPolicy  = "DMARC_BAD_POLICY"
	dmarcDNSFail    = "DMARC_DNSFAIL"

	arcAllow  = "ARC_ALLOW"
	arcReject = "ARC_REJECT"

	rdnsNone    = "RDNS_NONE"
	rdnsFail    = "HFILTER_HOSTNAME_UNKNOWN"
	rdnsDNSFail = "RDNS_DNSFAIL"
	heloBareIP  = "HFILTER_HELO_BAREIP"
	heloNoRes   = "HFILTER_HELO_NORES_A_OR_MX"

	missingDate  = "MISSING_DATE"
	invalidDate  = "INVALID_DATE"
	dateFuture   = "DATE_IN_FUTURE"
	datePast     = "DATE_IN_PAST"
	missingMID   = "MISSING_MID"
	invalidMID   = "INVALID_MSGID"
	missingFrom  = "MISSING_FROM"
	fromInvalid  = "FROM_INVALID"
	spoofName    = "SPOOF_DISPLAY_NAME"
	freemailRTo  = "FREEMAIL_REPLYTO_NEQ_FROM_DOM"
	subjAllCaps  = "SUBJ_ALL_CAPS"
	emptySubject = "EMPTY_SUBJECT"
	noSubject    = "MISSING_SUBJECT"

	htmlOnly   = "MIME_HTML_ONLY"
	hiddenText = "HTML_HIDDEN_TEXT"
	urlIP      = "HTTP_TO_IP"
	urlShort   = "REDIRECTOR_URL"
	phishing   = "PHISHING"
	badExt     = "MIME_BAD_EXTENSION"
	doubleExt  = "MIME_DOUBLE_BAD_EXTENSION"
)

// defaultScores are the weights of the symbols, in rspamd's scale: a
// message at 6 or more gets X-Spam-Flag: YES by default. Each alone is
// weak but the results of authentication, which are evidence about the
// sender; what spam looks like comes in threes and fours. A negative
// weight is evidence for the message.
var defaultScores = map[string]float64{
	spfAllow:    -0.2,
	spfFail:     1,
	spfSoftfail: 0.5,
	spfNeutral:  0,
	spfNone:     0.5,
	spfPermfail: 0.5,
	spfDNSFail:  0,

	dkimAllow:    -0.2,
	dkimReject:   1,
	dkimPermfail: 0.5,
	dkimTempfail: 0,
	dkimNone:     0,

	dmarcAllow:      -0.5,
	dmarcReject:     3.5,
	dmarcQuarantine: 1.5,
	dmarcSoftfail:   0.1,
	dmarcNone:       0,
	dmarcBadPolicy:  0.5,
	dmarcDNSFail:    0,

	arcAllow:  -0.5,
	arcReject: 1,

	rdnsNone:    2,
	rdnsFail:    1.5,
	rdnsDNSFail: 0,
	heloBareIP:  3,
	heloNoRes:   1.5,

	missingDate:  1.5,
	invalidDate:  1.5,
	dateFuture:   3,
	datePast:     1,
	missingMID:   2.5,
	invalidMID:   1.5,
	missingFrom:  2,
	fromInvalid:  2,
	spoofName:    6,
	freemailRTo:  3,
	subjAllCaps:  3,
	emptySubject: 1,
	noSubject:    2,

	htmlOnly:   1,
	hiddenText: 3,
	urlIP:      2.5,
	urlShort:   1.5,
	phishing:   5,
	badExt:     4,
	doubleExt:  6,
}
