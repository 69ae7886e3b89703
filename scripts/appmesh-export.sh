#!/usr/bin/env bash
# Exports one App Mesh mesh as the JSON of `aws appmesh describe-*` for every resource, for
# `appliance ctl import --from-dir DIR`:
#
#   DIR/mesh/<mesh>.json
#   DIR/virtualNode/<node>.json            DIR/virtualRouter/<router>.json
#   DIR/route/<router>/<route>.json        DIR/virtualService/<service>.json
#   DIR/virtualGateway/<gateway>.json      DIR/gatewayRoute/<gateway>/<route>.json
#   DIR/acm/<certificate id>.json          (`aws acm describe-certificate`, for the names
#                                            the appliance's replacement certificates carry)
#
# Usage: appmesh-export.sh MESH DIR [AWS CLI options, e.g. --region us-west-2 --profile p]
# Set APPMESH_EXPORT_ACM=0 to skip the ACM lookups (then pass `ctl import` the names with
# --certificate-domain ARN=NAME). Needs the AWS CLI; read-only.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 MESH DIR [aws appmesh options...]" >&2
  exit 2
fi
mesh=$1 dir=$2
shift 2
am() { aws appmesh "$@" "${opts[@]}"; }
opts=("$@")

# Names from a list call; `--output text` prints tab-separated names, or "None" for none.
names() { am "$@" --output text | tr '\t' '\n' | grep -v -x -e '' -e None || true; }

mkdir -p "$dir"/{mesh,virtualNode,virtualRouter,route,virtualService,virtualGateway,gatewayRoute}
am describe-mesh --mesh-name "$mesh" >"$dir/mesh/$mesh.json"

for n in $(names list-virtual-nodes --mesh-name "$mesh" --query 'virtualNodes[].virtualNodeName'); do
  am describe-virtual-node --mesh-name "$mesh" --virtual-node-name "$n" >"$dir/virtualNode/$n.json"
done
for r in $(names list-virtual-routers --mesh-name "$mesh" --query 'virtualRouters[].virtualRouterName'); do
  am describe-virtual-router --mesh-name "$mesh" --virtual-router-name "$r" >"$dir/virtualRouter/$r.json"
  mkdir -p "$dir/route/$r"
  for rt in $(names list-routes --mesh-name "$mesh" --virtual-router-name "$r" --query 'routes[].routeName'); do
    am describe-route --mesh-name "$mesh" --virtual-router-name "$r" --route-name "$rt" >"$dir/route/$r/$rt.json"
  done
done
for s in $(names list-virtual-services --mesh-name "$mesh" --query 'virtualServices[].virtualServiceName'); do
  am describe-virtual-service --mesh-name "$mesh" --virtual-service-name "$s" >"$dir/virtualService/$s.json"
done
for g in $(names list-virtual-gateways --mesh-name "$mesh" --query 'virtualGateways[].virtualGatewayName'); do
  am describe-virtual-gateway --mesh-name "$mesh" --virtual-gateway-name "$g" >"$dir/virtualGateway/$g.json"
  mkdir -p "$dir/gatewayRoute/$g"
  for gr in $(names list-gateway-routes --mesh-name "$mesh" --virtual-gateway-name "$g" --query 'gatewayRoutes[].gatewayRouteName'); do
    am describe-gateway-route --mesh-name "$mesh" --virtual-gateway-name "$g" --gateway-route-name "$gr" >"$dir/gatewayRoute/$g/$gr.json"
  done
done

# The domain names of every ACM certificate a listener uses.
if [ "${APPMESH_EXPORT_ACM:-1}" != 0 ]; then
  mkdir -p "$dir/acm"
  for arn in $(grep -rhoE 'arn:aws[a-z-]*:acm:[^"]+' "$dir"/virtualNode "$dir"/virtualGateway | sort -u); do
    aws acm describe-certificate --certificate-arn "$arn" "${opts[@]}" \
      --query 'Certificate.{CertificateArn: CertificateArn, DomainName: DomainName, SubjectAlternativeNames: SubjectAlternativeNames}' \
      >"$dir/acm/${arn##*/}.json" || echo "warning: cannot describe $arn; pass --certificate-domain to ctl import" >&2
  done
fi
echo "exported mesh $mesh to $dir" >&2
