import { describe, expect, it } from "vitest";
import { ErrorCode, InvalidSubjectTokenError, RavenError } from "../../../shared/errors";
import {
  SUBJECT_PREFIX,
  domainOfSubject,
  domainToken,
  isDomainName,
  isObjectName,
  nameToken,
  subjectMatches,
  subjects,
  tokenToName,
} from "../../../shared/protocol";

/** Values that must never become a subject token, in any position. */
const badNames: unknown[] = [
  "*",
  "a*b",
  ">",
  "node>",
  "a b",
  " node",
  "node ",
  "a\tb",
  "a\nb",
  "Node-1",
  "NODE",
  "",
  "a_b", // `_` is the escape for `.`; accepting it would make tokenToName ambiguous
  "-node",
  "node-",
  "é-node",
  "a..b",
  ".node",
  "node.",
  "x".repeat(254),
  42,
  null,
  undefined,
  {},
  ["node"],
  true,
];
/** Valid node names that are not valid domains (a domain is a single DNS label of at most 63 chars). */
const badDomainsOnly = ["factory.a", "x".repeat(64)];

/** Every builder that takes a node, called with a valid domain and the given node, and vice versa. */
const nodeBuilders = {
  nodeRegister: subjects.nodeRegister,
  nodeHeartbeat: subjects.nodeHeartbeat,
  gatewayHeartbeat: subjects.gatewayHeartbeat,
  gatewayAssignment: subjects.gatewayAssignment,
} as const;
const domainBuilders: Record<string, (domain: string) => string> = {
  nodeRegister: (d) => subjects.nodeRegister(d, "node-1"),
  nodeHeartbeat: (d) => subjects.nodeHeartbeat(d, "node-1"),
  gatewayHeartbeat: (d) => subjects.gatewayHeartbeat(d, "node-1"),
  assignment: (d) => subjects.assignment(d),
  gatewayAssignment: (d) => subjects.gatewayAssignment(d, "node-1"),
  domainScope: (d) => subjects.domainScope(d),
};

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to throw");
}

describe("subject builders", () => {
  it("build the documented subjects", () => {
    expect(SUBJECT_PREFIX).toBe("raven");
    expect(subjects.nodeRegister("factory-a", "factory-a-node-1")).toBe(
      "raven.d.factory-a.node.factory-a-node-1.register",
    );
    expect(subjects.nodeHeartbeat("factory-a", "factory-a-node-1")).toBe("raven.d.factory-a.node.factory-a-node-1.hb");
    expect(subjects.gatewayHeartbeat("shop-b", "shop-b-gw-2")).toBe("raven.d.shop-b.gw.shop-b-gw-2.hb");
    expect(subjects.assignment("vehicle-c")).toBe("raven.d.vehicle-c.assign");
    expect(subjects.gatewayAssignment("shop-b", "shop-b-gw-2")).toBe("raven.d.shop-b.gw.shop-b-gw-2.assign");
    expect(subjects.domainScope("kiosk")).toBe("raven.d.kiosk.>");
    expect(subjects.status()).toBe("raven.ctl.status");
  });

  it("build wildcards that match exactly the per-domain subjects", () => {
    expect(subjects.allNodeRegisters()).toBe("raven.d.*.node.*.register");
    expect(subjects.allNodeHeartbeats()).toBe("raven.d.*.node.*.hb");
    expect(subjects.allGatewayHeartbeats()).toBe("raven.d.*.gw.*.hb");
    expect(subjects.allAssignments()).toBe("raven.d.*.assign");
    // Same token count as the concrete subject, so `*` lines up with the domain and node tokens.
    const concrete = [
      [subjects.allNodeRegisters(), subjects.nodeRegister("a", "b.c")],
      [subjects.allNodeHeartbeats(), subjects.nodeHeartbeat("a", "b.c")],
      [subjects.allGatewayHeartbeats(), subjects.gatewayHeartbeat("a", "b.c")],
      [subjects.allAssignments(), subjects.assignment("a")],
    ] as const;
    for (const [wild, subject] of concrete) {
      const w = wild.split(".");
      const s = subject.split(".");
      expect(s).toHaveLength(w.length);
      w.forEach((tok, i) => (tok === "*" ? expect(s[i]).not.toBe("") : expect(s[i]).toBe(tok)));
    }
  });

  for (const [builder, build] of Object.entries(nodeBuilders)) {
    it(`${builder} rejects every bad node name with InvalidSubjectTokenError`, () => {
      for (const bad of badNames) {
        const err = thrown(() => build("factory-a", bad as string));
        expect(err, `node ${JSON.stringify(bad)}`).toBeInstanceOf(InvalidSubjectTokenError);
        expect(err).toBeInstanceOf(RavenError);
        const e = err as InvalidSubjectTokenError;
        expect(e.code).toBe(ErrorCode.InvalidSubjectToken);
        expect(e.name).toBe("InvalidSubjectTokenError");
        expect(e.what).toBe("node name");
        expect(e.token).toBe(bad);
      }
    });
  }

  for (const [builder, build] of Object.entries(domainBuilders)) {
    it(`${builder} rejects every bad domain with InvalidSubjectTokenError`, () => {
      for (const bad of [...badNames, ...badDomainsOnly]) {
        const err = thrown(() => build(bad as string));
        expect(err, `domain ${JSON.stringify(bad)}`).toBeInstanceOf(InvalidSubjectTokenError);
        expect((err as InvalidSubjectTokenError).what).toBe("domain");
        expect((err as Error).message).toContain("domain");
      }
    });
  }

  it("accept names at the length limits and reject one more character", () => {
    const label63 = "d".repeat(63);
    expect(subjects.assignment(label63)).toBe(`raven.d.${label63}.assign`);
    expect(() => subjects.assignment(`${label63}d`)).toThrow(InvalidSubjectTokenError);
    const name253 = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(61)}`;
    expect(name253).toHaveLength(253);
    expect(subjects.nodeHeartbeat("x", name253).split(".")).toHaveLength(6);
    expect(() => subjects.nodeHeartbeat("x", `${name253}e`)).toThrow(InvalidSubjectTokenError);
  });

  it("the token helpers validate too", () => {
    expect(domainToken("factory-a")).toBe("factory-a");
    expect(() => domainToken("Factory")).toThrow(InvalidSubjectTokenError);
    expect(() => nameToken("a b")).toThrow(InvalidSubjectTokenError);
    const err = thrown(() => nameToken("gw*", "gateway name")) as InvalidSubjectTokenError;
    expect(err.what).toBe("gateway name");
    expect(err.message).toBe('invalid gateway name "gw*" for a NATS subject');
  });
});

describe("node names with dots", () => {
  const dotted = ["node.example.com", "ip-10-0-0-1.ec2.internal", "a.b", "0.1.2.3", "x-1.y-2"];

  it("map each dot to `_` so the name stays one token", () => {
    expect(nameToken("ip-10-0-0-1.ec2.internal")).toBe("ip-10-0-0-1_ec2_internal");
    expect(subjects.nodeHeartbeat("edge", "node.example.com")).toBe("raven.d.edge.node.node_example_com.hb");
    for (const name of dotted) {
      for (const subject of [subjects.nodeRegister("edge", name), subjects.gatewayHeartbeat("edge", name)]) {
        expect(subject.split(".")).toHaveLength(6);
        expect(subject).not.toContain(name);
      }
    }
  });

  it("map back with tokenToName (one-to-one)", () => {
    const tokens = new Set<string>();
    for (const name of [...dotted, "plain", "node-1"]) {
      const token = nameToken(name);
      expect(token).not.toContain(".");
      expect(tokenToName(token)).toBe(name);
      tokens.add(token);
      const subject = subjects.gatewayHeartbeat("edge", name);
      expect(tokenToName(subject.split(".")[4]!)).toBe(name);
    }
    expect(tokens.size).toBe(dotted.length + 2);
  });
});

describe("name predicates", () => {
  it("isDomainName accepts DNS labels only", () => {
    for (const ok of ["a", "factory-a", "0", "a0-b1", "d".repeat(63)]) expect(isDomainName(ok), ok).toBe(true);
    for (const bad of [...badNames, ...badDomainsOnly]) expect(isDomainName(bad), String(bad)).toBe(false);
  });

  it("isObjectName accepts DNS subdomains", () => {
    for (const ok of ["a", "node.example.com", "cloud-gw-1", "1.2.3.4"]) expect(isObjectName(ok), ok).toBe(true);
    for (const bad of badNames) expect(isObjectName(bad), String(bad)).toBe(false);
  });

  // DNS-1123 subdomain (as the source comment promises): every dot-separated part is a DNS label, so a part
  // may not start or end with '-'. Kubernetes rejects these node names.
  it("isObjectName rejects parts that start or end with '-'", () => {
    expect(isObjectName("a.-b")).toBe(false);
    expect(isObjectName("a-.b")).toBe(false);
  });
});

describe("domainOfSubject", () => {
  it("is the third token of every raven.d. subject the builders produce", () => {
    const domains = ["factory-a", "kiosk", "x", "d".repeat(63)];
    for (const d of domains) {
      const built = [
        subjects.nodeRegister(d, "n.with.dots"),
        subjects.nodeHeartbeat(d, "n"),
        subjects.gatewayHeartbeat(d, "gw-1"),
        subjects.assignment(d),
        subjects.gatewayAssignment(d, "gw.1"),
        subjects.domainScope(d),
      ];
      for (const s of built) {
        expect(domainOfSubject(s), s).toBe(d);
        expect(s.split(".")[2]).toBe(d);
      }
    }
  });

  it("is the wildcard token of the cloud-side wildcards", () => {
    expect(domainOfSubject(subjects.allAssignments())).toBe("*");
    expect(domainOfSubject(subjects.allGatewayHeartbeats())).toBe("*");
  });

  it("is undefined for anything that is not a raven.d. subject", () => {
    for (const s of [
      "raven.ctl.status",
      "raven.d",
      "raven.d.",
      "raven",
      "",
      "other.d.x.assign",
      "RAVEN.d.x.assign",
      "raven.dd.x",
    ]) {
      expect(domainOfSubject(s), s).toBeUndefined();
    }
  });
});

describe("subjectMatches (allocation-free check of a body against its subject)", () => {
  const reference = (subject: string, domain: string, node: string) => {
    const parts = subject.split(".");
    return parts[2] === domain && parts[4] === nameToken(node);
  };
  it("agrees with the split-based definition on matching and near-miss subjects", () => {
    const names = ["a", "n-1", "n.1", "node-1.example", "gw", "gw-1x", "ab"];
    const domains = ["a", "factory-a", "factory-ab", "b"];
    let checked = 0;
    for (const d of domains) {
      for (const n of names) {
        for (const subject of [
          subjects.gatewayHeartbeat(d, n),
          subjects.nodeHeartbeat(d, n),
          subjects.nodeRegister(d, n),
        ]) {
          for (const d2 of domains) {
            for (const n2 of names) {
              expect(subjectMatches(subject, d2, n2), `${subject} vs ${d2}/${n2}`).toBe(reference(subject, d2, n2));
              checked++;
            }
          }
        }
      }
    }
    expect(checked).toBe(4 * 7 * 3 * 4 * 7);
  });

  it("refuses truncated subjects", () => {
    expect(subjectMatches("raven.d.a", "a", "n")).toBe(false);
    expect(subjectMatches("raven.d.a.gw", "a", "n")).toBe(false);
  });
});

describe("inspection subjects", () => {
  it("keep edge actors under raven.d.<domain> and match the viewer's wildcards", () => {
    const matches = (pattern: string, subject: string) => {
      const p = pattern.split(".");
      const s = subject.split(".");
      return p.length === s.length && p.every((t, i) => t === "*" || t === s[i]);
    };
    expect(subjects.gatewayInspect("edge-a", "a-gw.1")).toBe("raven.d.edge-a.gw.a-gw_1.inspect");
    expect(subjects.nodeInspect("edge-a", "n1")).toBe("raven.d.edge-a.node.n1.inspect");
    expect(subjects.inspectViewer("edge-a")).toBe("raven.d.edge-a.inspect.viewer");
    for (const s of [
      subjects.gatewayInspect("edge-a", "g"),
      subjects.nodeInspect("edge-a", "n"),
      subjects.inspectViewer("edge-a"),
    ]) {
      expect(domainOfSubject(s)).toBe("edge-a");
    }
    expect(matches(subjects.allEdgeInspect(), subjects.gatewayInspect("edge-a", "g"))).toBe(true);
    expect(matches(subjects.allEdgeInspect(), subjects.nodeInspect("edge-a", "n"))).toBe(true);
    expect(matches(subjects.allEdgeInspect(), subjects.inspectViewer("edge-a"))).toBe(false);
    expect(matches(subjects.allCoordinatorInspect(), subjects.coordinatorInspect("coordinator-1-42-ab12cd"))).toBe(
      true,
    );
    expect(subjects.controlInspectViewer()).toBe("raven.ctl.inspect.viewer");
  });

  it("refuse tokens that could escape their position", () => {
    for (const bad of ["*", ">", "a b", "A"]) {
      expect(() => subjects.gatewayInspect("edge-a", bad)).toThrow(InvalidSubjectTokenError);
      expect(() => subjects.inspectViewer(bad)).toThrow(InvalidSubjectTokenError);
      expect(() => subjects.coordinatorInspect(bad)).toThrow(InvalidSubjectTokenError);
    }
  });
});
