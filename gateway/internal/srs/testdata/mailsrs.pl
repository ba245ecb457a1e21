#!/usr/bin/perl
# A line-oriented front end to Perl's Mail::SRS (Guarded scheme), used by
# interop_test.go to check that Sluice and Mail::SRS understand each other.
#
# Usage: mailsrs.pl UNIXTIME MAXAGE_DAYS HASHLENGTH SECRET [OLDER_SECRET...]
# Reads lines from stdin:
#   forward SENDER ALIAS_DOMAIN
#   reverse ADDRESS
#   time UNIXTIME          (moves the clock; answers "ok UNIXTIME")
# and answers each with one line: "ok RESULT" or "err MESSAGE".
#
# UNIXTIME pins the clock Mail::SRS reads, so that both sides agree on
# "today"; it must be installed before Mail::SRS is compiled.
use strict;
use warnings;

my $fake_time;
BEGIN {
    $fake_time = $ARGV[0];
    *CORE::GLOBAL::time = sub { return $fake_time };
}

use Mail::SRS;

my (undef, $max_age, $hash_length, @secrets) = @ARGV;
die "usage: mailsrs.pl UNIXTIME MAXAGE HASHLENGTH SECRET...\n" unless @secrets;

my $srs = Mail::SRS->new(
    Secret        => \@secrets,
    MaxAge        => $max_age,
    HashLength    => $hash_length,
    AlwaysRewrite => 1,
);

# Bytes in, bytes out: local parts may be UTF-8 and must not be decoded,
# or lc() would fold non-ASCII letters that the Go side leaves alone.
binmode(STDIN);
binmode(STDOUT);
$| = 1;

# Mail::SRS warns when a hash matched only case-insensitively; that is
# expected in the tests and is not an error.
local $SIG{__WARN__} = sub { };

while (my $line = <STDIN>) {
    chomp $line;
    my ($op, @args) = split / /, $line;
    my $result = eval {
        if ($op eq 'forward') {
            $srs->forward($args[0], $args[1]);
        } elsif ($op eq 'reverse') {
            $srs->reverse($args[0]);
        } elsif ($op eq 'time') {
            $fake_time = $args[0];
        } else {
            die "unknown operation $op\n";
        }
    };
    if ($@) {
        my $msg = $@;
        $msg =~ s/\s+/ /g;
        print "err $msg\n";
    } else {
        print "ok $result\n";
    }
}
