#!/usr/bin/env bash
# The Spark image's entry point.
#   executor        a Spark-on-Kubernetes executor (Spark starts these pods from this image
#                   with the SPARK_* variables below; the same command as the public images')
#   master | worker a standalone master, or a worker of the master given next
#   anything else   spark-submit with those arguments (the extraction steps' pods name
#                   spark-submit themselves)
set -euo pipefail
case "${1:-}" in
  executor)
    shift
    mapfile -t java_opts < <(env | sed -n 's/^SPARK_JAVA_OPT_[0-9]*=//p')
    exec "$JAVA_HOME/bin/java" "${java_opts[@]}" -Xms"${SPARK_EXECUTOR_MEMORY:-1g}" -Xmx"${SPARK_EXECUTOR_MEMORY:-1g}" \
      -cp "$SPARK_HOME/jars/*${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" --podName "${SPARK_EXECUTOR_POD_NAME:-}" "$@"
    ;;
  master)
    shift
    exec spark-class org.apache.spark.deploy.master.Master "$@"
    ;;
  worker)
    shift
    exec spark-class org.apache.spark.deploy.worker.Worker "$@"
    ;;
  *)
    exec spark-submit "$@"
    ;;
esac
