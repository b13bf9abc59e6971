#!/bin/sh
# Records the firewall fixtures of test_evaluate.py inside a throwaway netns (run as root).
set -e
N=lsfw-record-$$
D=$(dirname "$0")/fixtures
ip netns add $N
trap 'ip netns del $N' EXIT
ip netns exec $N ip link set lo up
ip netns exec $N nft -f - <<'NFT'
table inet lsfilter {
  set blocked { type inet_service; elements = { 7001, 7002 } }
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iifname "lo" tcp dport 8080 counter drop
    ip daddr 127.0.0.0/8 tcp dport 9000-9100 reject with tcp reset
    ip6 daddr ::1 udp dport { 53, 5353 } drop
    tcp dport @blocked drop
    meta l4proto tcp tcp dport != 22 jump extra
  }
  chain extra {
    iif lo tcp dport 6000 log prefix "x" reject
  }
  chain output {
    type filter hook output priority 0; policy accept;
    oifname "lo" tcp dport 7777 drop
  }
}
NFT
ip netns exec $N iptables -A INPUT -i lo -p tcp --dport 5432 -j DROP
ip netns exec $N iptables -A INPUT -d 127.0.0.1/32 -p tcp -m multiport --dports 80,443 -j REJECT --reject-with tcp-reset
ip netns exec $N iptables -A OUTPUT ! -o lo -p udp --dport 1000:2000 -j DROP
ip netns exec $N ip6tables -A INPUT -i lo -p tcp --dport 6379 -j DROP
ip netns exec $N nft -j list ruleset > "$D/nft_ruleset.json"
ip netns exec $N nft list ruleset > "$D/nft_ruleset.txt"
( ip netns exec $N iptables-save; ip netns exec $N ip6tables-save ) > "$D/iptables_save.txt"
