"""Reaching into network namespaces: sockets, sysctls and nftables in a pod's namespace.

`base.Namespaces` is what the planners' apply step and the gatherers need; two kinds give it:
- `spawn.Spawning`: a new process per reach (pyroute2's forking socket opener, `nsenter`),
  for one-shot processes such as the in-process plugin fallback;
- `broker.Broker`: one long-lived helper *process* (`broker_main`) that enters namespaces
  and hands back sockets and answers, for the node service, where a fork per socket would
  be most of the cost of a CNI call.

`callers` opens a call's namespace paths as the service's caller sees them (its mount
namespace may not be the service's) and installs that view for the call (`netns.seen_as`).
"""
