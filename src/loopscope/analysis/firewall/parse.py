"""Parse firewall rulesets (pure: text in, :class:`~loopscope.analysis.firewall.model.Ruleset` out).

- ``nft -j list ruleset`` (libnftables JSON schema 1, ``man libnftables-json``) via :func:`parse_nft_json`;
- ``iptables-save`` / ``ip6tables-save`` text via :func:`parse_iptables_save`.

With iptables-nft (``iptables-save`` header says ``(nf_tables)``) the same rules appear in both; the nft JSON
shows iptables extensions only as opaque ``xt`` expressions, so :func:`merge_rulesets` keeps the iptables
text for those tables.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import replace
from typing import Any

from loopscope.analysis.firewall.model import (
    _IPT_HOOKS,
    _IPT_PRIO,
    Chain,
    FirewallRule,
    Match,
    Ruleset,
)
from loopscope.errors import ParseError
from loopscope.model.firewall import FirewallFacts

__all__ = [
    "merge_rulesets",
    "parse_firewall_facts",
    "parse_iptables_save",
    "parse_nft_json",
    "parse_rulesets",
]

# ---------------------------------------------------------------------------------------------- nft JSON


def _ports(right: Any, sets: dict[str, tuple[Any, ...]]) -> tuple[tuple[int, int], ...] | None:
    if isinstance(right, bool):
        return None
    if isinstance(right, int):
        return ((right, right),)
    if isinstance(right, str) and right.startswith("@"):
        elems = sets.get(right[1:])
        return None if elems is None else _ports({"set": list(elems)}, sets)
    if isinstance(right, dict) and "range" in right:
        lo, hi = right["range"]
        return ((int(lo), int(hi)),) if isinstance(lo, int) and isinstance(hi, int) else None
    if isinstance(right, dict) and "set" in right:
        out: list[tuple[int, int]] = []
        for item in right["set"]:
            got = _ports(item, sets)
            if got is None:
                return None
            out += got
        return tuple(out)
    return None


def _nets(right: Any, sets: dict[str, tuple[Any, ...]]) -> tuple[str, ...] | None:
    if isinstance(right, str) and right.startswith("@"):
        elems = sets.get(right[1:])
        return None if elems is None else _nets({"set": list(elems)}, sets)
    if isinstance(right, str):
        try:
            return (str(ipaddress.ip_network(right, strict=False)),)
        except ValueError:
            return None
    if isinstance(right, dict) and "prefix" in right:
        p = right["prefix"]
        return (str(ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)),)
    if isinstance(right, dict) and "range" in right:
        lo, hi = (ipaddress.ip_address(x) for x in right["range"])
        return tuple(str(n) for n in ipaddress.summarize_address_range(lo, hi))
    if isinstance(right, dict) and "set" in right:
        out: list[str] = []
        for item in right["set"]:
            got = _nets(item, sets)
            if got is None:
                return None
            out += got
        return tuple(out)
    return None


def _words(right: Any) -> tuple[str, ...] | None:
    if isinstance(right, str):
        return (right,)
    if isinstance(right, list):
        return tuple(str(x) for x in right)
    if isinstance(right, dict) and "set" in right:
        return tuple(str(x) for x in right["set"])
    return None


def _nft_match(m: dict[str, Any], sets: dict[str, tuple[Any, ...]]) -> list[Match]:
    """One ``{"match": ...}`` expression -> Match(es); ``tcp dport 80`` also implies ``l4proto tcp``."""
    op = m.get("op", "==")
    negate = op == "!="
    left, right = m.get("left"), m.get("right")
    unknown = [Match("unknown", False, (json.dumps(m, sort_keys=True),))]
    if op not in ("==", "!=", "in"):
        return unknown
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key in ("iifname", "iif", "oifname", "oif"):
            names = _words(right)
            return [Match(key[:3], negate, names)] if names else unknown
        if key == "l4proto":
            names = _words(right)
            return [Match("l4proto", negate, names)] if names else unknown
        if key == "nfproto":
            return [Match("unknown", False, ("meta nfproto",))] if negate else []
        return unknown
    if isinstance(left, dict) and "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if fld in ("dport", "sport") and proto in ("tcp", "udp", "th"):
            ports = _ports(right, sets)
            if ports is None:
                return unknown
            out = [Match(fld, negate, ports)]
            return out + ([Match("l4proto", False, (proto,))] if proto != "th" else [])
        if fld in ("daddr", "saddr") and proto in ("ip", "ip6"):
            nets = _nets(right, sets)
            return [Match(fld, negate, nets)] if nets is not None else unknown
        if (fld == "protocol" and proto == "ip") or (fld == "nexthdr" and proto == "ip6"):
            names = _words(right)
            return [Match("l4proto", negate, names)] if names else unknown
        return unknown
    if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state":
        names = _words(right)
        return [Match("ct_state", negate, names)] if names else unknown
    return unknown


def _nft_rule(obj: dict[str, Any], position: int, sets: dict[str, tuple[Any, ...]]) -> FirewallRule:
    matches: list[Match] = []
    verdict: str | None = None
    target: str | None = None
    words: list[str] = []
    for expr in obj.get("expr", []):
        ((kind, body),) = expr.items()
        if kind == "match":
            matches += _nft_match(body, sets)
            words.append(_match_text(body))
        elif kind in ("accept", "drop", "return", "continue"):
            verdict = verdict or kind
            words.append(kind)
        elif kind == "reject":
            verdict = verdict or "reject"
            words.append(
                "reject"
                + (f" with {body['type']}" if isinstance(body, dict) and "type" in body else "")
            )
        elif kind in ("jump", "goto"):
            verdict, target = verdict or kind, body.get("target")
            words.append(f"{kind} {target}")
        elif kind in ("counter", "log", "limit", "comment"):
            if kind == "log":
                words.append("log")
        elif kind == "xt":
            if body.get("type") == "target" and str(body.get("name")).upper() in ("DROP", "REJECT"):
                verdict = verdict or str(body["name"]).lower()
            else:
                matches.append(Match("unknown", False, (f"xt {body.get('name')}",)))
            words.append(f"xt {body.get('name')}")
        else:
            matches.append(Match("unknown", False, (kind,)))
            words.append(kind)
    return FirewallRule(
        source="nft",
        family=obj["family"],
        table=obj["table"],
        chain=obj["chain"],
        position=position,
        matches=tuple(matches),
        verdict=verdict,
        target=target,
        text=" ".join(words),
    )


def _operand_text(x: Any) -> str:
    if isinstance(x, dict):
        if "meta" in x:
            return str(x["meta"].get("key"))
        if "payload" in x:
            return f"{x['payload'].get('protocol')} {x['payload'].get('field')}"
        if "ct" in x:
            return f"ct {x['ct'].get('key')}"
        if "prefix" in x:
            return f"{x['prefix']['addr']}/{x['prefix']['len']}"
        if "range" in x:
            return "-".join(str(v) for v in x["range"])
        if "set" in x:
            return "{ " + ", ".join(_operand_text(v) for v in x["set"]) + " }"
    if isinstance(x, list):
        return ",".join(str(v) for v in x)
    return str(x)


def _match_text(m: dict[str, Any]) -> str:
    op = m.get("op", "==")
    return f"{_operand_text(m.get('left'))} {'!= ' if op == '!=' else ''}{_operand_text(m.get('right'))}"


def parse_nft_json(text: str) -> Ruleset:
    """Parse ``nft -j list ruleset``.

    Args:
        text: the JSON document.

    Returns:
        Every chain with its rules; named sets (``@blocked``) are resolved into the rules' values.

    Raises:
        ParseError: not JSON, not an ``{"nftables": [...]}`` document, or an item of another shape
            than nft writes.

    Example: the rule ``iifname "lo" tcp dport 8080 drop`` becomes ``FirewallRule(verdict="drop",
    matches=(Match("iif", False, ("lo",)), Match("dport", False, ((8080, 8080),)),
    Match("l4proto", False, ("tcp",))))``.
    """
    try:
        doc = json.loads(text)
        items = doc["nftables"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ParseError(f"not an nft JSON ruleset: {exc}", path="nft -j list ruleset") from exc
    try:
        return _nft_ruleset(items)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # an item or expression of another shape than nft writes (a chain without "name"...)
        raise ParseError(
            f"malformed nft JSON ruleset: {exc!r}", path="nft -j list ruleset"
        ) from exc


def _nft_ruleset(items: Any) -> Ruleset:
    """The ruleset of the ``nftables`` items (see :func:`parse_nft_json`).

    Raises:
        AttributeError, KeyError, TypeError, ValueError: an item of another shape than nft writes.
    """
    sets: dict[tuple[str, str], dict[str, tuple[Any, ...]]] = {}
    chains: dict[tuple[str, str, str], Chain] = {}
    order: list[tuple[str, str, str]] = []
    for item in items:
        if "set" in item:
            s = item["set"]
            elems = tuple(
                e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
                for e in s.get("elem", [])
            )
            sets.setdefault((s["family"], s["table"]), {})[s["name"]] = elems
        elif "chain" in item:
            c = item["chain"]
            key = (c["family"], c["table"], c["name"])
            prio = c.get("prio", 0)
            chains[key] = Chain(
                family=c["family"],
                table=c["table"],
                name=c["name"],
                hook=c.get("hook"),
                priority=prio if isinstance(prio, int) else 0,
                policy=c.get("policy"),
            )
            order.append(key)
    rules: dict[tuple[str, str, str], list[FirewallRule]] = {k: [] for k in order}
    for item in items:
        if "rule" in item:
            r = item["rule"]
            key = (r["family"], r["table"], r["chain"])
            bucket = rules.setdefault(key, [])
            bucket.append(_nft_rule(r, len(bucket), sets.get((r["family"], r["table"]), {})))
    out = tuple(replace(chains[k], rules=tuple(rules.get(k, ()))) for k in order)
    return Ruleset(chains=out, sources=("nft",))


# --------------------------------------------------------------------------------------------- iptables


def _ipt_ports(value: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in value.split(","):
        lo, _, hi = part.partition(":")
        out.append((int(lo or 0), int(hi or (lo if not _ else 65535))))
    return tuple(out)


def _ipt_rule(tokens: list[str], family: str, table: str, position: int) -> FirewallRule:
    chain = tokens[1]
    matches: list[Match] = []
    verdict: str | None = None
    target: str | None = None
    i, negate = 2, False
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate, i = True, i + 1
            continue
        arg = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in ("-i", "--in-interface", "-o", "--out-interface"):
            matches.append(
                Match("iif" if tok in ("-i", "--in-interface") else "oif", negate, (arg,))
            )
        elif tok in ("-p", "--protocol"):
            matches.append(Match("l4proto", negate, (arg,)))
        elif tok in ("-s", "--source", "-d", "--destination"):
            nets = tuple(str(ipaddress.ip_network(a, strict=False)) for a in arg.split(","))
            matches.append(Match("saddr" if tok in ("-s", "--source") else "daddr", negate, nets))
        elif tok in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            matches.append(Match("dport", negate, _ipt_ports(arg)))
        elif tok in ("--sport", "--source-port", "--sports", "--source-ports"):
            matches.append(Match("sport", negate, _ipt_ports(arg)))
        elif tok in ("--state", "--ctstate"):
            matches.append(Match("ct_state", negate, tuple(s.lower() for s in arg.split(","))))
        elif tok in ("-j", "--jump", "-g", "--goto"):
            name = arg
            if name in ("ACCEPT", "DROP", "REJECT", "RETURN"):
                verdict = name.lower()
            elif tok in ("-g", "--goto"):
                verdict, target = "goto", name
            elif name.isupper() and name not in _IPT_HOOKS:
                verdict = None  # an extension target (LOG, MARK...): not a verdict
            else:
                verdict, target = "jump", name
            i += 2
            while i < len(tokens) and tokens[i] not in ("-j", "-g") and tokens[i].startswith("--"):
                i += 2  # target options, e.g. --reject-with
            continue
        elif tok in ("-m", "--match", "-c"):
            i += 3 if tok == "-c" else 2
            continue
        elif tok.startswith("-"):
            matches.append(
                Match("unknown", False, (f"{'! ' if negate else ''}{tok} {arg}".strip(),))
            )
        else:
            i += 1
            continue
        negate, i = False, i + 2
    return FirewallRule(
        source="iptables",
        family=family,
        table=table,
        chain=chain,
        position=position,
        matches=tuple(matches),
        verdict=verdict,
        target=target,
        text=" ".join(tokens),
    )


def parse_iptables_save(text: str, family: str | None = None) -> Ruleset:
    """Parse ``iptables-save`` or ``ip6tables-save`` output (several dumps may be concatenated).

    Args:
        text: the dump.
        family: ``ip`` or ``ip6``; None reads it from each ``# Generated by ip6tables-save`` header
            (``ip`` when there is none).

    Returns:
        Chains of every table; built-in chains get their hook and the table's priority (raw -300,
        mangle -150, nat -100, filter 0, security 50).

    Raises:
        ParseError: a rule line outside a table, or a value that is not a port/address.

    Example: ``-A INPUT -i lo -p tcp -m tcp --dport 5432 -j DROP`` ->
    ``FirewallRule(chain="INPUT", verdict="drop", matches=(Match("iif", False, ("lo",)),
    Match("l4proto", False, ("tcp",)), Match("dport", False, ((5432, 5432),))))``.
    """
    fam = family or "ip"
    table: str | None = None
    chains: dict[tuple[str, str, str], Chain] = {}
    rules: dict[tuple[str, str, str], list[FirewallRule]] = {}
    nf_tables = False
    sources: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("# Generated by"):
            if family is None:
                fam = "ip6" if "ip6tables" in line else "ip"
            nf_tables = nf_tables or "nf_tables" in line
            sources.append("ip6tables" if fam == "ip6" else "iptables")
            continue
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        try:
            if line.startswith("*"):
                table = line[1:]
            elif line.startswith(":"):
                if table is None:
                    raise ValueError("chain outside a table")
                name, policy = line[1:].split()[:2]
                chains[(fam, table, name)] = Chain(
                    family=fam,
                    table=table,
                    name=name,
                    hook=_IPT_HOOKS.get(name),
                    source="iptables",
                    priority=_IPT_PRIO.get(table, 0),
                    policy=policy.lower() if policy != "-" else None,
                )
            elif line.startswith("-A "):
                if table is None:
                    raise ValueError("rule outside a table")
                tokens = shlex.split(line)
                bucket = rules.setdefault((fam, table, tokens[1]), [])
                bucket.append(_ipt_rule(tokens, fam, table, len(bucket)))
        except (ValueError, IndexError) as exc:
            raise ParseError(str(exc), path="iptables-save", lineno=lineno, line=raw) from exc
    out = tuple(replace(c, rules=tuple(rules.get(k, ()))) for k, c in chains.items())
    return Ruleset(
        chains=out,
        sources=tuple(dict.fromkeys(sources or ["iptables"])),
        nf_tables_backed=nf_tables,
    )


def merge_rulesets(*rulesets: Ruleset) -> Ruleset:
    """Join rulesets; with iptables-nft, the nft copies of ip/ip6 tables that iptables-save also
    printed are dropped (the iptables text decodes extensions that nft shows as opaque ``xt``)."""
    ipt_tables = {
        (c.family, c.table)
        for rs in rulesets
        if "nft" not in rs.sources and rs.nf_tables_backed
        for c in rs.chains
    }
    chains: list[Chain] = []
    for rs in rulesets:
        for c in rs.chains:
            if "nft" in rs.sources and (c.family, c.table) in ipt_tables:
                continue
            chains.append(c)
    return Ruleset(
        chains=tuple(chains),
        sources=tuple(s for rs in rulesets for s in rs.sources),
        nf_tables_backed=any(rs.nf_tables_backed for rs in rulesets),
    )


def parse_rulesets(
    nft_json: str | None = None, iptables_save: str | None = None, ip6tables_save: str | None = None
) -> tuple[Ruleset, tuple[str, ...]]:
    """Parse whichever dumps were read (None = not read) and merge them.

    Returns:
        The merged ruleset and one message per dump that did not parse (``nft: ...``); an unparsable dump
        is left out rather than failing the whole read.
    """
    parts: list[Ruleset] = []
    errors: list[str] = []
    if nft_json is not None:
        try:
            parts.append(parse_nft_json(nft_json))
        except ParseError as exc:
            errors.append(f"nft: {exc}")
    for text, fam, tool in (
        (iptables_save, "ip", "iptables-save"),
        (ip6tables_save, "ip6", "ip6tables-save"),
    ):
        if text is not None and text.strip():
            try:
                parts.append(parse_iptables_save(text, fam))
            except ParseError as exc:
                errors.append(f"{tool}: {exc}")
    return merge_rulesets(*parts), tuple(errors)


def parse_firewall_facts(facts: FirewallFacts) -> tuple[Ruleset | None, tuple[str, ...]]:
    """The merged ruleset of the dumps :func:`loopscope.backends.linux.firewall.read_firewall` read.

    Returns:
        None when no dump was read, else the merged ruleset (:func:`parse_rulesets`); then the reasons
        a dump was not read (``facts.errors``) followed by one message per dump that did not parse.
    """
    texts = (facts.nft_json, facts.iptables_save, facts.ip6tables_save)
    if all(t is None for t in texts):
        return None, facts.errors
    ruleset, parse_errors = parse_rulesets(*texts)
    return ruleset, facts.errors + parse_errors
